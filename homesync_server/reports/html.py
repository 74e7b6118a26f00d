"""The report as one self-contained HTML page: inline CSS (with print rules) and inline
SVG charts, no script and no external asset, so that it can be mailed or archived.
"""

from __future__ import annotations

import html
from itertools import repeat
from typing import Callable, Iterable, Iterator

from homesync.console import human_age, human_size, human_time
from homesync_server.reports import status as st
from homesync_server.reports import svg
from homesync_server.reports.columns import SHOWN, Column
from homesync_server.reports.fleet import AGE_BUCKETS, NEVER_BUCKET, Fleet
from homesync_server.reports.model import Report
from homesync_server.reports.status import HOUR
from homesync_server.reports.text import Memo, printable

NEEDS = frozenset({"growth", "activity"})

STATUS_CLASS = {st.OK: "ok", st.STALE: "stale", st.CRITICAL: "critical", st.NEVER: "never",
                st.OWNER_GONE: "gone", st.RETIRED: "retired", st.REPLACED: "retired"}
COLOURS = {"ok": "#059669", "stale": "#d97706", "critical": "#dc2626", "never": "#6b7280"}

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#111827;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb}
.meta{color:#4b5563}.warning{background:#fef3c7;padding:6px 10px;border-radius:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #e5e7eb;border-radius:6px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:22px}.charts{display:flex;flex-wrap:wrap;gap:24px}
svg text{font:11px system-ui,sans-serif;fill:#374151}svg text.title{font-size:13px;font-weight:600}
svg .grid{stroke:#e5e7eb}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #f3f4f6;vertical-align:top}
th{background:#f9fafb;position:sticky;top:0}td.n{text-align:right;white-space:nowrap}
.badge{font-weight:600;padding:1px 6px;border-radius:3px;white-space:nowrap}
.ok{background:#d1fae5;color:#065f46}.stale{background:#fef3c7;color:#92400e}
.critical{background:#fee2e2;color:#991b1b}.never{background:#e5e7eb;color:#1f2937}
.gone{background:#ede9fe;color:#5b21b6}.retired{background:#f3f4f6;color:#6b7280}
@media print{body{margin:0;font-size:10px}table{font-size:9px}th{position:static}
tr,.card,svg{break-inside:avoid}h2{break-after:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
@page{size:A4 landscape;margin:12mm}
"""


def escape(text: str) -> str:
    """Return text safe inside an element or a quoted attribute, without control characters."""
    return html.escape(printable(text))


def render(report: Report) -> str:
    """Return the report as a complete HTML document."""
    title = "homesync report" + (f" for {report.user}" if report.user else "")
    body = [f"<h1>{escape(title)}</h1>", _meta(report), _cards(report),
            '<h2>Freshness and storage</h2><div class="charts">', _freshness_chart(report),
            svg.line_chart(report.growth.times, report.growth.series, "Storage per user over time (deduplicated)"),
            "</div>", _storage(report), _assurance(report), _fleet_policy(report), "<h2>Machines</h2>", _machines(report),
            _activity(report)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _meta(report: Report) -> str:
    text = (f'<p class="meta">Generated {escape(human_time(report.generated_at))}. Policy: stale after '
            f"{report.policy.warn_seconds / HOUR:g} h, critical after {report.policy.critical_seconds / HOUR:g} h "
            "without a successful backup.</p>")
    if report.directory_error:
        text += (f'<p class="warning">The directory could not be asked ({escape(report.directory_error)}): '
                 "names come from the index and leavers are not flagged.</p>")
    return text


def _cards(report: Report) -> str:
    s = report.summary
    share = f"{s.protected_share:.0%}" if s.protected_share is not None else "–"
    cards = [("Protected within policy", f"{share}", f"{s.protected} of {s.expected} machines"),
             ("Need attention", str(report.needs_attention), "critical, or never backed up"),
             ("Machines", str(s.machines), ", ".join(f"{k.lower()} {v}" for k, v in s.by_status.items() if v)),
             ("Storage", human_size(s.storage_total), f"{len(s.storage_by_user)} users")]
    return '<div class="cards">' + "".join(
        f'<div class="card">{escape(label)}<b>{escape(value)}</b><span class="meta">{escape(note)}</span></div>'
        for label, value, note in cards) + "</div>"


def _freshness_chart(report: Report) -> str:
    warn, critical = report.policy.warn_seconds, report.policy.critical_seconds
    uppers = dict(AGE_BUCKETS)
    bars = []
    for label, count in report.summary.age_buckets:
        upper = uppers.get(label)
        kind = "never" if label == NEVER_BUCKET else "ok" if upper <= warn else \
            "stale" if upper <= critical else "critical"
        bars.append((label, count, COLOURS[kind]))
    return svg.bar_chart(bars, "Age of the newest backup (machines expected to back up)")


def _fleet_policy(report: Report) -> str:
    """Return the fleet policy's paragraph and its laggards' table ('' without a policy)."""
    p = report.fleet_policy
    if not p.newest:
        return ""
    running = sum(v == p.newest for v in p.applied.values())
    text = (f'<p class="meta">Fleet policy version {p.newest} ({escape(human_time(p.newest_at))}): '
            f"{running} of {len(p.applied)} machines run it.</p>")
    if p.lagging:
        text += "<p>Not applied within a day of reaching the server:</p>" + _table(
            ("Machine", "Runs version", "Last seen"),
            ((escape(m["id"]), m["applied"], escape(human_time(m["last_seen"]))) for m in p.lagging), numeric={1})
    return text


def _assurance(report: Report) -> str:
    a = report.assurance
    if not a.drilled:
        drills = '<p class="meta">No drill recorded: <code>homesync-server drill</code> proves that backups restore.</p>'
    else:
        counts = ", ".join(f"{n} {escape(result)}" for result, n in sorted(a.drilled.items()))
        drills = (f'<p class="meta">{sum(a.drilled.values())} machines drilled, newest '
                  f"{escape(human_time(a.newest_drill))}: {counts}.</p>")
        if a.not_passed:
            drills += _table(("Owner", "Machine", "Drilled", "Archive", "Why it did not pass"),
                             ((escape(d["owner"]), escape(d["name"]), escape(human_time(d["finished"])),
                               escape(d["archive"]), escape(d["why"])) for d in a.not_passed))
        if a.failed > len(a.not_passed):
            drills += f'<p class="meta">The newest {len(a.not_passed)} of {a.failed} that did not pass are listed.</p>'

    frozen = ""
    if a.frozen:
        frozen = ("<p>Pruning frozen by a mass change until released (<code>homesync-server machine release</code>):"
                  "</p>" + _table(("Owner", "Machine", "Archive", "New data", "Usually", "Since"),
                                  ((escape(f["owner"]), escape(f["name"]), escape(f["archive"]), f"{f['share']:.0%}",
                                    f"{f['baseline']:.0%}", escape(human_time(f["flagged_at"]))) for f in a.frozen),
                                  numeric={3, 4}))
    if a.rolled_back:
        frozen += ("<p>History rolled back after an agent session, pruning frozen until released "
                   "(<code>homesync-server machine release</code>):</p>" + _table(
                       ("Owner", "Machine", "Why", "Since"),
                       ((escape(f["owner"]), escape(f["name"]), escape(f["reason"]), escape(human_time(f["frozen_at"])))
                        for f in a.rolled_back)))
    return f"<h2>Recovery drills and mass changes</h2>{drills}{frozen}"


def _storage(report: Report) -> str:
    more = len(report.summary.storage_by_user) - 20
    note = f'<p class="meta">and {more} more users (see the JSON or CSV report)</p>' if more > 0 else ""
    return "<h2>Storage per user</h2>" + _table(
        ("User", "Name", "Stored"),
        ((escape(o), escape(d), escape(human_size(n))) for o, d, n in report.summary.storage_by_user[:20]),
        numeric={2}) + note


def _machines(report: Report) -> str:
    return _table([column.title for column in SHOWN],
                  body="".join(_machine_rows(report.machines.most_urgent_first(), report.generated_at)))


def _machine_rows(machines: Fleet, now: float) -> Iterator[str]:
    """Return a <tr> per machine, built column by column (100,000 of them)."""
    cells = [_CELLS[column.kind](machines, column, now) for column in SHOWN]
    return map(_ROW.__mod__, zip(*(values for column in cells for values in column)))


def _reasons(machines: Fleet, column: Column, now: float) -> list[Iterable]:
    safe = Memo(escape)
    return [map(safe.__getitem__, [reason or state for reason, state in zip(machines[column.field],
                                                                            machines["agent_state"])])]


def _memo_escaped(machines: Fleet, column: Column, now: float) -> list[Iterable]:
    return [map(Memo(escape).__getitem__, machines[column.field])]


# How the page writes each kind of column (columns.py): the values of its cell's
# placeholders (two for a status: its class and its words).
_CELLS: dict[str, Callable[[Fleet, Column, float], list[Iterable]]] = {
    "status": lambda m, c, now: [map(STATUS_CLASS.__getitem__, m[c.field]), m[c.field]],
    "user": _memo_escaped,
    "state": _memo_escaped,
    "id": _memo_escaped,
    "text": lambda m, c, now: [_escaped(m[c.field])],
    "time": lambda m, c, now: [map(human_time, m[c.field])],
    "age": lambda m, c, now: [map(human_age, m[c.field], repeat(now))],
    "count": lambda m, c, now: [m[c.field]],
    "size": lambda m, c, now: [map(human_size, m[c.field])],
    "flag": lambda m, c, now: [["yes" if v else "" for v in m[c.field]]],
    "reason": _reasons,
}
_CELL = {"status": '<td><span class="badge %s">%s</span></td>'}
_ROW = "<tr>" + "".join(_CELL.get(c.kind, "<td class=n>%s</td>" if c.right else "<td>%s</td>") for c in SHOWN) + "</tr>"


def _escaped(texts: list[str]) -> list[str]:
    """Return escape() of each text: when all are printable, by escaping them as one
    text (split again at a control character none of them holds), one C call each."""
    joined = "\x00".join(texts)
    if not texts or not all(map(str.isprintable, texts)) or joined.count("\x00") != len(texts) - 1:
        return list(map(escape, texts))
    return html.escape(joined).split("\x00")


def _activity(report: Report) -> str:
    a = report.activity
    counts = ", ".join(f"{escape(k)} {v}" for k, v in sorted(a.counts.items())) or "nothing"
    more = f" The newest {len(a.events)} are listed." if a.truncated else ""
    return (f"<h2>Activity {escape(human_time(a.since))} – {escape(human_time(a.until))}</h2>"
            f'<p class="meta">{counts}.{more}</p>' + _table(
                ("Time", "Action", "Actor", "Machine", "From", "What"),
                ((human_time(e.at), escape(e.action), escape(e.actor), escape(e.machine or (e.machine_id or "")),
                  escape(e.source), escape(e.what)) for e in a.events)))


def _table(headers: Iterable[str], rows: Iterable[tuple] = (), *, numeric: frozenset[int] | set[int] = frozenset(),
           body: str = "") -> str:
    """Return a table: its headers, then rows of cells already escaped (those at the
    indexes in numeric aligned right), or a body of rows built by the caller."""
    head = "".join(f"<th>{title}</th>" for title in headers)
    body += "".join("<tr>" + "".join(f"<td class=n>{cell}</td>" if i in numeric else f"<td>{cell}</td>"
                                     for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
