from tests.faults.trial import SEED, TALLY


def pytest_report_header(config):
    return f"fault suite seed: {SEED} (replay with HOMESYNC_FAULT_SEED={SEED})"


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    write = terminalreporter.write_line
    runs = {(kind, victim): n for (kind, victim, outcome), n in TALLY.items() if outcome == "run"}
    passed = sum(n for (_, _, outcome), n in TALLY.items() if outcome == "passed")
    write(f"fault trials (seed {SEED}): {sum(runs.values())} run, {passed} passed")
    for kind, victim in sorted(runs):
        write(f"  {kind:8} {victim:16} run {runs[kind, victim]}, passed {TALLY[kind, victim, 'passed']}, "
              f"failed {TALLY[kind, victim, 'failed']} (victim gone before its kill: {TALLY[kind, victim, 'missed']})")
