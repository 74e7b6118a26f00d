"""Text for people: what users typed (machine names, agent reasons) made safe to
show, with control characters replaced, so that nothing typed on a laptop can move an
admin's cursor or break a page; and times to the minute, formatted once per minute.
"""

from __future__ import annotations

from functools import lru_cache

from homesync import console


def printable(text: str) -> str:
    """Return text with every control character replaced by U+FFFD."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else "\N{REPLACEMENT CHARACTER}" for c in text)


def human_time(ts: float | None) -> str:
    """Return a local time to the minute like console.human_time ("never" for None)."""
    return _minute(int(ts // 60)) if ts else "never"


@lru_cache(maxsize=1 << 16)
def _minute(minute: int) -> str:
    # A fleet's times crowd into few minutes: 100,000 rows need a few thousand strftime calls.
    return console.human_time(minute * 60.0)
