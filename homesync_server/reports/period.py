"""The report's time range from the command line: dates and times in ISO 8601 (local
time unless an offset is given) or ages such as "30d", "12h", "2w". Pure.
"""

from __future__ import annotations

import re
from datetime import datetime

from homesync.errors import UsageError

DEFAULT_DAYS = 30
_AGE = re.compile(r"(\d+(?:\.\d+)?)([hdw])")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float) -> float:
    """Given "2026-11-01", "2026-11-01T08:00", "2026-11-01T08:00+01:00" or an age like
    "7d", return the Unix time it means; raise UsageError for anything else."""
    age = _AGE.fullmatch(text.strip())
    if age:
        return now - float(age.group(1)) * _UNITS[age.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(f"not a date: {text!r}", "write 2026-11-01, 2026-11-01T08:00 or an age such as 7d") from None


def period(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """Return [since, until) from the options: by default the last DEFAULT_DAYS days up
    to now; raise UsageError if the range is empty."""
    start = parse_when(since, now) if since else now - DEFAULT_DAYS * 86400
    end = parse_when(until, now) if until else now + 1  # + 1: include events of this very second
    if end <= start:
        raise UsageError("--until must be after --since")
    return start, end
