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


def choose_setup(offer, ask: Callable[[str], str] = input, show: Callable[[str], None] = print):
    """Given what the server offers (homesync.actions.setup.Offer), show the user's
    computers and the templates, ask how this computer is set up; return the
    setup.Choice. Raise Cancelled when the user gives up."""
    try:
        return _choose_setup(offer, ask, show)
    except Cancelled:
        raise Cancelled("nothing was set up") from None


def _choose_setup(offer, ask: Callable[[str], str], show: Callable[[str], None]):
    from homesync.actions import setup  # the chooser is the action's terminal face; no cycle at import
    backed_up = [m for m in offer.machines if m.get("archives")]
    who = f"{offer.full_name} ({offer.login.user})" if offer.full_name else offer.login.user
    show(f"Signed in as {console.printable(who)} at {offer.login.server}.")
    _show_machines(offer.machines, show)
    _show_templates(offer.templates, show)
    show("How should this computer be set up?")
    letters = "n"
    show("  n) as a new computer")
    if backed_up:
        letters += "ri"
        show("  r) as the replacement of one of your computers: its files come back, its backups continue here")
        show("  i) identical to one of your computers: its files come back, under a name of its own")
    if offer.templates:
        letters += "t"
        show("  t) from a template: its files come in, under a name of its own")
    mode = _ask_letter(ask, f"Choose [{'/'.join(letters)}]: ", letters)
    if mode == "r":
        return setup.Choice(setup.REPLACE, source=_pick(ask, "Replace which computer?", offer.machines))
    source = None
    if mode == "i":
        source = _pick(ask, "Identical to which computer?", offer.machines)
    elif mode == "t":
        source = _pick(ask, "Start from which template?", offer.templates)
    name = _ask_default(ask, f"Name for this computer [{offer.suggested}]: ", offer.suggested)
    kind = {"n": setup.NEW, "i": setup.CLONE, "t": setup.TEMPLATE}[mode]
    return setup.Choice(kind, source=source, name=name)


def _show_machines(machines: list[dict], show: Callable[[str], None]) -> None:
    if not machines:
        show("You have no computers backed up yet.")
        return
    show("Your computers:")
    for number, m in enumerate(machines, start=1):
        last = (f"last backup {console.human_time(m['last_backup'])} ({console.human_age(m['last_backup'])}), "
                f"{console.human_size(m['last_size'])}") if m.get("last_backup") else "never backed up"
        show(f"  {number}) {console.printable(m['name'])}  ({last})")


def _show_templates(templates: list[dict], show: Callable[[str], None]) -> None:
    if not templates:
        return
    show("Templates:")
    for number, t in enumerate(templates, start=1):
        show(f"  {number}) {console.printable(t['name'])}  (published {console.human_time(t.get('published'))}, "
             f"{console.human_size(t.get('original_size'))})")


def _pick(ask: Callable[[str], str], question: str, rows: list[dict]) -> str:
    """Ask for one of the numbered rows that has a backup (templates always have one)."""
    while True:
        row = rows[_ask_number(ask, f"{question} [1-{len(rows)}]: ", len(rows)) - 1]
        if row.get("archives", 1):
            return row["name"]


def _ask_default(ask: Callable[[str], str], prompt: str, default: str) -> str:
    """Ask for text; an empty answer takes the default (end of input cancels)."""
    try:
        answer = ask(prompt).strip()
    except EOFError:
        raise Cancelled("nothing was set up") from None
    return answer or default
