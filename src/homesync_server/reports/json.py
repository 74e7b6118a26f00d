"""The report as JSON, for tooling: the whole report (summary, machines, activity,
storage over time), times as Unix seconds like every other `--json` of homesync;
compact (`jq .` makes it readable), since a fleet of 100,000 machines is 50 MB of it.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from operator import attrgetter

from homesync_server.reports.fleet import FIELDS, MachineRow
from homesync_server.reports.model import Report

def render(report: Report) -> str:
    """Return the report as one JSON document."""
    parts = ["{"]
    for key, value in report.as_dict(with_machines=False).items():
        parts.append(f"{_dumps(key)}:")
        parts.extend(machines_parts(report.machines) if key == "machines" else [_dumps(value)])
        parts.append(",")
    parts[-1] = "}\n"
    return "".join(parts)  # once: each copy of 50 MB costs time


def machines(rows: list[MachineRow]) -> str:
    """Return the rows as a JSON array of objects, exactly as json.dumps writes their
    as_dict()."""
    return "".join(machines_parts(rows))


def machines_parts(rows: list[MachineRow]) -> list[str]:
    """Return the pieces of machines(rows): written column by column, each column
    encoded by one C call, so that no Python code runs per machine (100,000 of them)."""
    parts = ["["]
    for start in range(0, len(rows), _CHUNK):  # in chunks: the columns of all 100,000 would cost memory
        chunk = rows[start:start + _CHUNK]
        columns = [_column(name, list(map(attrgetter(name), chunk))) for name in FIELDS]
        if None in columns:  # a field of an unexpected type: let json say how it is written
            return [_dumps([row.as_dict() for row in rows])]
        parts.append(",".join(map(_TEMPLATE.__mod__, zip(*columns))))
        parts.append(",")
    if len(parts) > 1:
        parts.pop()
    parts.append("]")
    return parts


def _column(name: str, values: list) -> list[str] | None:
    """Return the values of one field encoded as JSON, or None when they are not all
    of the field's kind."""
    if name in _TEXTS:
        return list(map(encode_basestring, values)) if set(map(type, values)) <= {str} else None
    if not set(map(type, values)) <= _NUMBERS:
        return None
    # json writes an int or a float as its repr; the reprs it writes otherwise are
    # the only ones _JSON_WORDS holds: map(dict.get, keys, defaults) swaps them in C.
    texts = list(map(repr, values))
    return list(map(_JSON_WORDS.get, texts, texts))


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_TEXTS = frozenset(("machine_id", "owner", "display_name", "machine", "hostname", "state", "status",
                    "agent_version", "agent_state", "agent_reason"))
_NUMBERS = {int, float, bool, type(None)}
_CHUNK = 5000
_JSON_WORDS = {"None": "null", "True": "true", "False": "false", "nan": "NaN", "inf": "Infinity",
               "-inf": "-Infinity"}
_TEMPLATE = "{" + ",".join(f"{_dumps(name)}:%s" for name in FIELDS) + "}"
