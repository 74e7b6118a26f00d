"""The report's fleet as CSV, for spreadsheets and tooling: one row per machine, times
in ISO 8601 UTC, sizes in bytes, ages in whole seconds. Text a spreadsheet would take for a
formula is prefixed with an apostrophe (machine names and agent reasons come from users).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from homesync_server.reports.fleet import MachineRow
from homesync_server.reports.model import Report

COLUMNS = ("machine_id", "owner", "display_name", "machine", "hostname", "state", "status", "last_backup",
           "age_seconds", "archives", "original_size", "deduplicated_size", "failed", "last_seen", "enrolled",
           "agent_version", "agent_state", "agent_reason")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def render(report: Report) -> str:
    """Return the fleet rows of the report as CSV text with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(row) for row in report.machines)
    return out.getvalue()


def _cells(m: MachineRow) -> tuple:
    age = None if m.age_seconds is None else int(m.age_seconds)
    return (m.machine_id, m.owner, defuse(m.display_name), defuse(m.machine), defuse(m.hostname), m.state,
            m.status, iso_time(m.last_backup), age, m.archives, m.original_size, m.deduplicated_size, m.failed,
            iso_time(m.last_seen), iso_time(m.enrolled), defuse(m.agent_version), defuse(m.agent_state),
            defuse(m.agent_reason))


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
