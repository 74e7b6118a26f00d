"""The report's fleet as CSV, for spreadsheets and tooling: one row per machine, times
in ISO 8601 UTC, sizes in bytes, ages in whole seconds. Text a spreadsheet would take for a
formula is prefixed with an apostrophe (machine names and agent reasons come from users).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from functools import lru_cache
from itertools import repeat
from typing import Callable, Iterable, Sequence

from homesync_server.reports.columns import FIELDS, POLICY_FIELDS
from homesync_server.reports.fleet import Fleet
from homesync_server.reports.model import Report

NEEDS: frozenset[str] = frozenset()
COLUMNS = tuple(field.name for field in FIELDS if field.in_csv) + tuple(field.name for field in POLICY_FIELDS)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def render(report: Report) -> str:
    """Return the fleet rows of the report as CSV text with a header line; each row ends
    with the machine's part of the fleet policy (POLICY_FIELDS)."""
    machines, policy = report.machines, report.fleet_policy
    if policy.newest:
        ids, lagging = machines["machine_id"], {m["id"] for m in policy.lagging}
        applied = list(map(policy.applied.get, ids))
        lags = [None if version is None else lag for version, lag in zip(applied, map(lagging.__contains__, ids))]
    else:
        applied = lags = list(repeat(None, len(machines)))
    return _lines([COLUMNS]) + _lines(zip(*_columns(machines), applied, lags))


def _lines(cells: Iterable[Sequence]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(cells)
    return out.getvalue()


def _columns(machines: Fleet) -> list[Iterable]:
    """Return the cells of the machines column by column (100,000 of them)."""
    return [_CELLS[field.kind](machines[field.name]) for field in FIELDS if field.in_csv]


def iso_time(ts: float | None) -> str:
    """Return a Unix time as ISO 8601 UTC to the second, or '' for None."""
    if ts is None:
        return ""
    second = int(ts)
    return _minute(second // 60) + _SECONDS[second % 60]


@lru_cache(maxsize=1 << 16)
def _minute(minute: int) -> str:
    # A fleet's times crowd into few minutes: the text up to the seconds ("2026-11-27T08:15:"), made once.
    return datetime.fromtimestamp(minute * 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:")


_SECONDS = tuple(f"{second:02d}Z" for second in range(60))


def defuse(text: str) -> str:
    """Return text a spreadsheet will show as text, never run as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def defused(texts: list[str]) -> list[str]:
    """Return defuse() of each text; when none needs it (the usual case), the list
    itself, found by one C loop."""
    if any(map(str.startswith, texts, repeat(FORMULA_STARTS))):
        return list(map(defuse, texts))
    return texts


def _whole_seconds(values: list[float | None]) -> list[int | None]:
    return [None if value is None else int(value) for value in values]


def _as_is(values: list) -> list:
    return values


# How the CSV writes each kind of field (columns.py).
_CELLS: dict[str, Callable[[list], Iterable]] = {
    "id": _as_is, "user": _as_is, "state": _as_is, "status": _as_is, "count": _as_is, "size": _as_is,
    "flag": _as_is, "text": defused, "time": lambda values: map(iso_time, values), "seconds": _whole_seconds,
}
