"""The report as text for a terminal or an e-mail from cron: the summary first, then
the machines most urgent first, then the activity of the time range.
"""

from __future__ import annotations

from itertools import chain, repeat
from typing import Callable, Sequence

from homesync.console import human_age, human_size, human_time
from homesync_server.reports.activity import Event
from homesync_server.reports.columns import SHOWN, Column
from homesync_server.reports.fleet import Fleet
from homesync_server.reports.model import Report
from homesync_server.reports.status import HOUR
from homesync_server.reports.text import printable, printables

NEEDS = frozenset({"activity"})
MACHINE_HEADERS = tuple(column.header for column in SHOWN)
ACTIVITY_HEADERS = ("TIME", "ACTION", "ACTOR", "MACHINE", "FROM", "WHAT")
REASON_WIDTH = 60


def render(report: Report) -> str:
    """Return the report as aligned text, the machines most urgent first."""
    columns = _machine_columns(report.machines.most_urgent_first(), report.generated_at)
    parts = [_heading(report), _summary(report), _assurance(report), *_fleet_policy(report), "", _columns_table(MACHINE_HEADERS, columns),
             "", _activity_heading(report),
             _table(ACTIVITY_HEADERS, [_event_cells(e) for e in report.activity.events])]
    parts.append("")  # the final newline, without copying the whole text once more
    return "\n".join(parts)


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
             f"{report.needs_attention} need attention now",
             "status: " + ", ".join(f"{k} {v}" for k, v in s.by_status.items() if v),
             "recovery-point ages: " + ", ".join(f"{label}: {n}" for label, n in s.age_buckets),
             f"storage: {human_size(s.storage_total)} in total; "
             + ", ".join(f"{owner} {human_size(n)}" for owner, _, n in s.storage_by_user[:10])
             + (" …" if len(s.storage_by_user) > 10 else "")]
    return "\n".join(lines)


def _assurance(report: Report) -> str:
    a = report.assurance
    if not a.drilled:
        lines = ["drills: none recorded (`homesync-server drill` proves that backups restore)"]
    else:
        lines = [f"drills: {sum(a.drilled.values())} machines drilled, newest {human_time(a.newest_drill)}: "
                 + ", ".join(f"{n} {result}" for result, n in sorted(a.drilled.items()))]
        lines += [f"  not passed: {printable(d['owner'])}'s {printable(d['name'])} ({human_time(d['finished'])}, "
                  f"{printable(d['archive']) or 'no archive'}): {printable(d['why'])}" for d in a.not_passed]
        if a.failed > len(a.not_passed):
            lines.append(f"  … and {a.failed - len(a.not_passed)} more that did not pass (all in the JSON report's counts)")
    lines += [f"pruning frozen by a mass change: {printable(f['owner'])}'s {printable(f['name'])} "
              f"({printable(f['archive'])}: {f['share']:.0%} new, usually {f['baseline']:.0%}; "
              f"since {human_time(f['flagged_at'])}; `homesync-server machine release`)" for f in a.frozen]
    lines += [f"history rolled back, pruning frozen: {printable(f['owner'])}'s {printable(f['name'])} "
              f"({printable(f['reason'])}; since {human_time(f['frozen_at'])}; `homesync-server machine release`)"
              for f in a.rolled_back]
    return "\n".join(lines)


def _fleet_policy(report: Report) -> list[str]:
    """Return the fleet-policy lines: the newest version and the machines not following it."""
    p = report.fleet_policy
    if not p.newest:
        return []
    lines = [f"fleet policy: version {p.newest} ({human_time(p.newest_at)}); "
             f"{sum(v == p.newest for v in p.applied.values())} of {len(p.applied)} machines run it"]
    lines += [f"  not applied within a day of reaching the server: {m['id']} runs version {m['applied']} "
              f"(last seen {human_time(m['last_seen'])})" for m in p.lagging]
    return lines


def _machine_columns(machines: Fleet, now: float) -> list[list[str]]:
    """Return the cells of the machines column by column (for 100,000 machines a call
    per cell is what the report would spend its time on)."""
    return [_CELLS[column.kind](machines, column, now) for column in SHOWN]


def _reasons(machines: Fleet, column: Column, now: float) -> list[str]:
    return printables([(reason or state)[:REASON_WIDTH]
                       for reason, state in zip(machines[column.field], machines["agent_state"])])


# How the text report writes each kind of column (columns.py) as cells.
_CELLS: dict[str, Callable[[Fleet, Column, float], list[str]]] = {
    "status": lambda m, c, now: m[c.field],
    "user": lambda m, c, now: m[c.field],
    "state": lambda m, c, now: m[c.field],
    "id": lambda m, c, now: m[c.field],
    "text": lambda m, c, now: printables(m[c.field]),
    "time": lambda m, c, now: list(map(human_time, m[c.field])),
    "age": lambda m, c, now: list(map(human_age, m[c.field], repeat(now))),
    "count": lambda m, c, now: list(map(str, m[c.field])),
    "size": lambda m, c, now: list(map(human_size, m[c.field])),
    "flag": lambda m, c, now: ["yes" if v else "" for v in m[c.field]],
    "reason": _reasons,
}


def _event_cells(e: Event) -> list[str]:
    return [human_time(e.at), printable(e.action), printable(e.actor), printable(e.machine or (e.machine_id or "")),
            printable(e.source), printable(e.what)]


def _activity_heading(report: Report) -> str:
    a = report.activity
    counts = ", ".join(f"{k} {v}" for k, v in sorted(a.counts.items())) or "nothing"
    more = f" (the newest {len(a.events)} listed)" if a.truncated else ""
    return f"activity {human_time(a.since)} – {human_time(a.until)}: {counts}{more}"


def _table(headers: Sequence[str], rows: list[list[str]]) -> str:
    return _columns_table(headers, [list(column) for column in zip(*rows)] if rows else [[] for _ in headers])


def _columns_table(headers: Sequence[str], columns: list[list[str]]) -> str:
    """Return the headers and the columns' cells as lines of left-aligned columns two
    spaces apart, without trailing blanks."""
    widths = [max(len(header), max(map(len, column), default=0)) for header, column in zip(headers, columns)]
    # One % per line pads every cell of it: a C loop over the lines, no call per cell.
    line = "  ".join(f"%-{width}s" for width in widths)
    return "\n".join(map(str.rstrip, map(line.__mod__, chain([tuple(headers)], zip(*columns)))))
