"""The interactive restore on a terminal: after the user logs in, list their computers
with their newest backup, let them pick one, then choose what this computer becomes
(replace it, clone it, or only get the files back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from homesync import console
from homesync.errors import Cancelled, NotFoundError

REPLACE, CLONE, FILES = "replace", "clone", "files"


@dataclass(frozen=True)
class Choice:
    machine: str
    adopt: bool = False
    as_new: str | None = None


def choose(machines: list[dict], enrolled: bool, ask: Callable[[str], str] = input,
           show: Callable[[str], None] = print) -> Choice:
    """Given the user's machines, ask which to restore and what this computer becomes;
    return the choice. Raise NotFoundError if there is nothing to restore, Cancelled
    when the user gives up (empty answer or end of input)."""
    candidates = [m for m in machines if m.get("archives")]
    if not candidates:
        raise NotFoundError("none of your computers has a backup yet")
    show("Your computers:")
    for number, m in enumerate(candidates, start=1):
        show(f"  {number}) {m['name']}  (newest backup {console.human_time(m['last_backup'])}, "
             f"{console.human_age(m['last_backup'])}, {console.human_size(m['last_size'])})")
    picked = candidates[_ask_number(ask, f"Restore which computer? [1-{len(candidates)}]: ", len(candidates)) - 1]
    if enrolled:
        return Choice(picked["name"])
    show("What should this computer become?")
    show(f"  r) replace {picked['name']!r}: this computer takes its place, and its backups continue")
    show("  c) clone it: restore the same home, then enroll this computer under a new name")
    show("  f) files only: restore the home, enroll nothing")
    mode = _ask_letter(ask, "Choose [r/c/f]: ", "rcf")
    if mode == "r":
        return Choice(picked["name"], adopt=True)
    if mode == "c":
        return Choice(picked["name"], as_new=_ask_text(ask, "Name for this computer: "))
    return Choice(picked["name"])


def _answer(ask: Callable[[str], str], prompt: str) -> str:
    try:
        answer = ask(prompt).strip()
    except EOFError:
        answer = ""
    if not answer:
        raise Cancelled("nothing was restored")
    return answer


def _ask_number(ask: Callable[[str], str], prompt: str, highest: int) -> int:
    while True:
        answer = _answer(ask, prompt)
        if answer.isdigit() and 1 <= int(answer) <= highest:
            return int(answer)


def _ask_letter(ask: Callable[[str], str], prompt: str, letters: str) -> str:
    while True:
        answer = _answer(ask, prompt).lower()[:1]
        if answer in letters:
            return answer


def _ask_text(ask: Callable[[str], str], prompt: str) -> str:
    return _answer(ask, prompt)
