"""Machines as admins name them: by id, or by display name ("Joe's Thinkpad", matched
the way enrollment keeps names unique: case and spacing aside) and, where two users
have a machine of that name, by owner too (`--machine NAME --user joe`)."""

from __future__ import annotations

from homesync import names
from homesync.errors import ConflictError, InvalidNameError, NotFoundError
from homesync_server.config import Layout
from homesync_server.index_store import open_index


def resolve_machine(layout: Layout, text: str, owner: str | None = None) -> str:
    """Given a machine id or display name (and its owner, if given), return the id.
    Raise NotFoundError if none matches, ConflictError if several do."""
    index = open_index(layout, read_only=True)
    try:
        if names.is_machine_id(text):
            found = index.machine(text)
            if found and (owner is None or found["owner"] == owner):
                return text
        machines = index.machines(owner)
    finally:
        index.close()
    try:
        key = names.machine_name_key(text)
    except InvalidNameError:
        key = None
    matches = [m for m in machines if key is not None and names.machine_name_key(m["name"]) == key]
    whose = f" of {owner}" if owner else ""
    if not matches:
        raise NotFoundError(f"no machine {text!r}{whose}", "see `homesync-server machines` for ids and names")
    if len(matches) > 1:
        owners = ", ".join(sorted(m["owner"] for m in matches))
        raise ConflictError(f"several machines are called {text!r} (of {owners})",
                            "say whose with --user NAME, or give the machine's id")
    return matches[0]["id"]
