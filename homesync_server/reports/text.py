"""Text for people: what users typed (machine names, agent reasons) made safe to
show, with control characters replaced, so that nothing typed on a laptop can move an
admin's cursor or break a page. (Times, ages and sizes are worded by homesync.console.)
"""

from __future__ import annotations

from typing import Callable


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
