from tests.faults.trial import SEED, TALLY
from tests.support.homesync_client import computer_factory  # noqa: F401


def pytest_report_header(config):
    return f"fault suite seed: {SEED} (replay with HOMESYNC_FAULT_SEED={SEED})"


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    write = terminalreporter.write_line
    write(f"fault trials (seed {SEED}): {sum(TALLY.values())} run, "
          f"{sum(n for (_, _, outcome), n in TALLY.items() if outcome == 'passed')} passed")
    for (kind, victim, outcome), count in sorted(TALLY.items()):
        write(f"  {kind:8} {victim:24} {outcome:8} {count}")
