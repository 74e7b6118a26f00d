"""The report as text for a terminal or an e-mail from cron: the summary first, then
the machines most urgent first, then the activity of the time range.
"""

from __future__ import annotations

from typing import Sequence

from homesync.console import human_age, human_size
from homesync_server.reports.activity import Event
from homesync_server.reports.fleet import MachineRow, ordered_for_reading
from homesync_server.reports.model import Report
from homesync_server.reports.status import HOUR
from homesync_server.reports.text import human_time, printable

MACHINE_HEADERS = ("STATUS", "OWNER", "NAME", "MACHINE", "LAST BACKUP", "AGE", "ARCHIVES", "ORIGINAL",
                   "STORED", "FAILED", "LAST SEEN", "VERSION", "AGENT SAYS")
ACTIVITY_HEADERS = ("TIME", "ACTION", "ACTOR", "MACHINE", "FROM", "WHAT")
REASON_WIDTH = 60


def render(report: Report) -> str:
    """Return the report as aligned text."""
    parts = [_heading(report), _summary(report), "",
             _table(MACHINE_HEADERS, [_machine_cells(m, report.generated_at)
                                      for m in ordered_for_reading(report.machines)]),
             "", _activity_heading(report),
             _table(ACTIVITY_HEADERS, [_event_cells(e) for e in report.activity.events])]
    return "\n".join(parts) + "\n"


def _heading(report: Report) -> str:
    line = (f"homesync report, {human_time(report.generated_at)}"
            + (f", user {report.user}" if report.user else "")
            + f" (stale after {report.policy.warn_seconds / HOUR:g} h,"
              f" critical after {report.policy.critical_seconds / HOUR:g} h)")
    if report.directory_error:
        line += f"\nthe directory could not be asked ({report.directory_error}): " \
                "names from the index, leavers not flagged"
    return line


def _summary(report: Report) -> str:
    s = report.summary
    share = f"{s.protected_share:.0%}" if s.protected_share is not None else "-"
    lines = [f"protected within policy: {s.protected} of {s.expected} machines ({share}); "
             f"{len(report.alarming)} need attention now",
             "status: " + ", ".join(f"{k} {v}" for k, v in s.by_status.items() if v),
             "recovery-point ages: " + ", ".join(f"{label}: {n}" for label, n in s.age_buckets),
             f"storage: {human_size(s.storage_total)} in total; "
             + ", ".join(f"{owner} {human_size(n)}" for owner, _, n in s.storage_by_user[:10])
             + (" …" if len(s.storage_by_user) > 10 else "")]
    return "\n".join(lines)


def _machine_cells(m: MachineRow, now: float) -> list[str]:
    reason = m.agent_reason or m.agent_state
    return [m.status, m.owner, printable(m.display_name), printable(m.machine), human_time(m.last_backup),
            human_age(m.last_backup, now), str(m.archives), human_size(m.original_size),
            human_size(m.deduplicated_size), str(m.failed), human_age(m.last_seen, now), printable(m.agent_version),
            printable(reason[:REASON_WIDTH])]


def _event_cells(e: Event) -> list[str]:
    return [human_time(e.at), printable(e.action), printable(e.actor), printable(e.machine or (e.machine_id or "")),
            printable(e.source), printable(e.what)]


def _activity_heading(report: Report) -> str:
    a = report.activity
    counts = ", ".join(f"{k} {v}" for k, v in sorted(a.counts.items())) or "nothing"
    more = f" (the newest {len(a.events)} listed)" if a.truncated else ""
    return f"activity {human_time(a.since)} – {human_time(a.until)}: {counts}{more}"


def _table(headers: Sequence[str], rows: list[list[str]]) -> str:
    cells = [list(headers)] + rows
    widths = [max(map(len, column)) for column in zip(*cells)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)
