"""How a length of time reads, in every output of both programs: its largest unit that
holds it at least one and a half times ("45 s", "12 min", "2.5 h", "3 d")."""

from __future__ import annotations

DAY, HOUR, MINUTE = 86400.0, 3600.0, 60.0


def duration(seconds: float) -> str:
    """Given seconds (negative counts as 0), return them as short human text; hours under
    ten keep a decimal (not a ".0"), since "1 h" and "2 h" are far apart for a wait."""
    # Written out rather than looped over the units: a report words 200,000 durations.
    if seconds >= 1.5 * DAY:
        return f"{seconds / DAY:.0f} d"
    if seconds >= 1.5 * HOUR:
        hours = seconds / HOUR
        return f"{round(hours, 1):g} h" if hours < 10 else f"{hours:.0f} h"
    if seconds >= 1.5 * MINUTE:
        return f"{seconds / MINUTE:.0f} min"
    return f"{max(0.0, seconds):.0f} s"
