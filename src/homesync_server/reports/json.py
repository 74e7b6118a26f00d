"""The report as JSON, for tooling: the whole report (summary, machines, activity,
storage over time), times as Unix seconds like every other `--json` of homesync;
compact (`jq .` makes it readable), since a fleet of 100,000 machines is 50 MB of it.
"""

from __future__ import annotations

import json

from homesync_server.reports.model import Report


def render(report: Report) -> str:
    """Return the report as one JSON document."""
    return json.dumps(report.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
