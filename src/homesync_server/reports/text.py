"""Text for people: what users typed (machine names, agent reasons) made safe to
show, with control characters replaced, so that nothing typed on a laptop can move an
admin's cursor or break a page; and times, ages and sizes as homesync.console words them,
made cheap enough for 100,000 rows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from homesync import console


def printable(text: str) -> str:
    """Return text with every control character replaced by U+FFFD."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else "\N{REPLACEMENT CHARACTER}" for c in text)


def printables(texts: list[str]) -> list[str]:
    """Return printable() of each text; when all are printable (the usual case), the
    list itself, found by one C loop."""
    return texts if all(map(str.isprintable, texts)) else list(map(printable, texts))


class Memo(dict):
    """A dict that makes each missing value with make(key) and keeps it: for texts a
    fleet repeats (owners, versions, agent reasons), memo[text] is one lookup."""

    def __init__(self, make: Callable[[str], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: str) -> str:
        value = self[key] = self._make(key)
        return value


def human_time(ts: float | None) -> str:
    """Return a local time to the minute like console.human_time ("never" for None)."""
    return _minute(int(ts // 60)) if ts else "never"


@lru_cache(maxsize=1 << 16)
def _minute(minute: int) -> str:
    # A fleet's times crowd into few minutes: 100,000 rows need a few thousand strftime calls.
    return console.human_time(minute * 60.0)


def human_size(n: int | float | None) -> str:
    """Return n bytes in words exactly like console.human_size (the same divisions in
    the same order), without its loop."""
    if n is None:
        return "-"
    if -1000 < n < 1000:
        return f"{n:.0f} B"
    n /= 1000
    if -1000 < n < 1000:
        return f"{n:.1f} KB"
    n /= 1000
    if -1000 < n < 1000:
        return f"{n:.1f} MB"
    n /= 1000
    if -1000 < n < 1000:
        return f"{n:.1f} GB"
    return f"{n / 1000:.1f} TB"


def age_teller(now: float) -> Callable[[float | None], str]:
    """Return a function saying how long before now a time was, exactly like
    console.human_age(ts, now)."""
    def human_age(ts: float | None) -> str:
        if not ts:
            return "never"
        seconds = now - ts
        seconds = seconds if seconds > 0 else 0  # max(0, seconds), without the call
        if seconds >= 86400:
            return f"{seconds / 86400:.0f}d ago"
        if seconds >= 3600:
            return f"{seconds / 3600:.0f}h ago"
        if seconds >= 60:
            return f"{seconds / 60:.0f}m ago"
        return f"{seconds:.0f}s ago"
    if not now:
        return lambda ts: console.human_age(ts, now)
    return human_age
