"""How a length of time reads, in every output of both programs: its largest unit that
holds it at least one and a half times ("45 s", "12 min", "2.5 h", "3 d")."""

from __future__ import annotations

_UNITS = (("d", 86400.0), ("h", 3600.0), ("min", 60.0))


def duration(seconds: float) -> str:
    """Given seconds (negative counts as 0), return them as short human text; hours under
    ten keep a decimal (not a ".0"), since "1 h" and "2 h" are far apart for a wait."""
    seconds = max(0.0, seconds)
    for unit, size in _UNITS:
        if seconds >= 1.5 * size:
            value = seconds / size
            return f"{round(value, 1):g} {unit}" if unit == "h" and value < 10 else f"{value:.0f} {unit}"
    return f"{seconds:.0f} s"
