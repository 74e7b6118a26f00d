"""The mass-change signal: a machine whose newest backup wrote an unusually large share
of its data anew, as when ransomware encrypts a home directory. Pure: it reads the
backup statistics the agents reported (deduplicated size over original size).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Sequence

MIN_CHANGED_BYTES = 1 << 20  # below a MiB of new data, a large share is a small home, not an attack
COMPLETE = ("success", "warning")


@dataclass(frozen=True)
class Signal:
    """The archive that changed too much, the share of its data it wrote anew, and the
    machine's usual share before it."""

    archive: str
    share: float
    baseline: float


def change_share(archive: dict) -> float:
    """Given an archive's statistics, return the share of its data that was new to the
    repository (0 for an empty archive)."""
    original = archive["original_size"]
    return archive["deduplicated_size"] / original if original > 0 else 0.0


def assess(archives: Sequence[dict], share: float, factor: float, min_history: int = 1) -> Signal | None:
    """Given a machine's archives oldest first (rows with result, original_size and
    deduplicated_size), return a Signal if its newest complete archive wrote at least
    `share` of its data anew and at least `factor` times the median of the archives
    before it; else None. The oldest archive, the full backup that seeded the
    repository, is no measure of change and is left out of the history."""
    complete = [a for a in archives if a["result"] in COMPLETE and a["original_size"] > 0]
    if len(complete) < min_history + 2:  # the seed, the history, the newest
        return None
    newest, history = complete[-1], complete[1:-1]
    baseline = median(change_share(a) for a in history)
    current = change_share(newest)
    if current >= share and current >= factor * baseline and newest["deduplicated_size"] >= MIN_CHANGED_BYTES:
        return Signal(newest["name"], current, baseline)
    return None
