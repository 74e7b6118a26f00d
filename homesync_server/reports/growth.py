"""Storage over time: how many deduplicated bytes the machines of the users who store
the most have added up to each day (or week, or month), from the archives. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DAY = 86400
MAX_USERS = 6  # the users who store the most; more lines would not be readable


@dataclass(frozen=True)
class Growth:
    """Cumulative deduplicated bytes per user up to the end of each time bucket (times
    are the buckets' starts)."""

    bucket_seconds: int
    times: list[float]
    series: list[tuple[str, list[int]]]  # (label, cumulative bytes per bucket)

    def as_dict(self) -> dict[str, Any]:
        return {"bucket_seconds": self.bucket_seconds, "times": self.times,
                "series": [{"label": label, "bytes": values} for label, values in self.series]}


def bucket_width(first: float, now: float) -> int:
    """Return the bucket length for a chart from first to now: a day for up to four
    months, a week for up to three years, else 30 days."""
    span = max(0.0, now - first)
    if span <= 120 * DAY:
        return DAY
    return 7 * DAY if span <= 3 * 365 * DAY else 30 * DAY


def growth(rows: list[dict[str, Any]], labels: dict[str, str], width: int, now: float) -> Growth:
    """Given (owner, bucket, added) rows, labels for the owners, the bucket width and
    the time, return the cumulative series, biggest first."""
    if not rows:
        return Growth(width, [], [])
    first, last = min(r["bucket"] for r in rows), max(int(now // width), max(r["bucket"] for r in rows))
    added: dict[str, list[int]] = {}
    for row in rows:
        added.setdefault(row["owner"], [0] * (last - first + 1))[row["bucket"] - first] += row["added"]
    order = sorted(added, key=lambda o: (-sum(added[o]), o))
    series = [(labels.get(o) or o, _cumulative(added[o])) for o in order]
    return Growth(width, [float(b * width) for b in range(first, last + 1)], series)


def _cumulative(values: list[int]) -> list[int]:
    total, out = 0, []
    for value in values:
        total += value
        out.append(total)
    return out
