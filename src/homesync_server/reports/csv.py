"""The report's fleet as CSV, for spreadsheets and tooling: one row per machine, times
in ISO 8601 UTC, sizes in bytes, ages in whole seconds. Text a spreadsheet would take for a
formula is prefixed with an apostrophe (machine names and agent reasons come from users).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from itertools import repeat
from operator import attrgetter

from typing import Iterable, Iterator, Sequence

from homesync_server.reports.fleet import MachineRow
from homesync_server.reports.model import Report
from homesync_server.reports.text import Memo

COLUMNS = ("machine_id", "owner", "display_name", "machine", "hostname", "state", "status", "last_backup",
           "age_seconds", "archives", "original_size", "deduplicated_size", "failed", "last_seen", "enrolled",
           "agent_version", "agent_state", "agent_reason")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def section(machines: list[MachineRow], now: float) -> str:
    """Return the CSV lines of the machines."""
    return _lines(_cells(machines))


def render(report: Report, sections: list | None = None) -> str:
    """Return the fleet rows of the report as CSV text with a header line (from sections
    when the report was made in parts)."""
    if sections is None:
        sections = [section(report.machines, report.generated_at)]
    return _lines([COLUMNS]) + "".join(sections)


def _lines(cells: Iterable[Sequence]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(cells)
    return out.getvalue()


def _cells(machines: list[MachineRow]) -> Iterator[tuple]:
    """Return the cells of each machine, built column by column (100,000 of them)."""
    safe, minutes = Memo(defuse), _Minutes()

    def iso(ts: float | None) -> str:  # iso_time, from the text of its minute
        if ts is None:
            return ""
        second = int(ts)
        return minutes[second // 60] + _SECONDS[second % 60]

    def column(field: str) -> list:
        return list(map(attrgetter(field), machines))

    return zip(column("machine_id"), column("owner"), map(safe.__getitem__, column("display_name")),
               defused(column("machine")), defused(column("hostname")), column("state"), column("status"),
               map(iso, column("last_backup")), [None if age is None else int(age) for age in column("age_seconds")],
               column("archives"), column("original_size"), column("deduplicated_size"), column("failed"),
               map(iso, column("last_seen")), map(iso, column("enrolled")),
               map(safe.__getitem__, column("agent_version")), map(safe.__getitem__, column("agent_state")),
               map(safe.__getitem__, column("agent_reason")))


class _Minutes(dict):
    """Unix minute -> its ISO 8601 text up to the seconds ("2026-11-27T08:15:"), each made once."""

    def __missing__(self, minute: int) -> str:
        text = self[minute] = iso_time(minute * 60)[:-3]
        return text


_SECONDS = tuple(f"{second:02d}Z" for second in range(60))


def iso_time(ts: float | None) -> str:
    """Return a Unix time as ISO 8601 UTC to the second, or '' for None."""
    if ts is None:
        return ""
    day, second = divmod(int(ts), 86400)
    date = _DATES.get(day)
    if date is None:
        date = _DATES[day] = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")
    return f"{date}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


_DATES: dict[int, str] = {}  # day number -> its date: a fleet's times fall on few days


def defuse(text: str) -> str:
    """Return text a spreadsheet will show as text, never run as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def defused(texts: list[str]) -> list[str]:
    """Return defuse() of each text; when none needs it (the usual case), the list
    itself, found by one C loop."""
    if any(map(str.startswith, texts, repeat(FORMULA_STARTS))):
        return list(map(defuse, texts))
    return texts
