"""The fault suite's seed and its tally of trials, apart from the trials themselves so
that a test run's controller (pytest-xdist's, which runs no test) can hand the seed to
its workers and add up their tallies without importing the trials."""

from __future__ import annotations

import os
import random
from collections import Counter

# A failing trial is replayed with HOMESYNC_FAULT_SEED=<the seed it printed>.
SEED_VARIABLE = "HOMESYNC_FAULT_SEED"
SEED = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(10**6))
TALLY: Counter = Counter()  # (kind, victim, outcome) -> trials


def summary(tally: Counter) -> list[str]:
    """Return the lines that tell how the trials went (none if no trial ran)."""
    if not tally:
        return []
    runs = {(kind, victim): n for (kind, victim, outcome), n in tally.items() if outcome == "run"}
    passed = sum(n for (_, _, outcome), n in tally.items() if outcome == "passed")
    lines = [f"fault trials (seed {SEED}): {sum(runs.values())} run, {passed} passed"]
    for kind, victim in sorted(runs):
        lines.append(f"  {kind:8} {victim:16} run {runs[kind, victim]}, passed {tally[kind, victim, 'passed']}, "
                     f"failed {tally[kind, victim, 'failed']} (victim gone before its kill: "
                     f"{tally[kind, victim, 'missed']})")
    return lines
