"""`homesync machines` and `homesync archives`: the user's computers and their backups,
as the server's index knows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from homesync import config as agent_config
from homesync import link, names
from homesync.config import AgentConfig, Paths
from homesync.errors import NotEnrolledError, NotFoundError


@dataclass(frozen=True)
class Login:
    """What a password login needs."""

    server: str
    fingerprint: str
    user: str
    password: str = field(repr=False)


def machines(paths: Paths, login: Login) -> list[dict]:
    """Return the user's machines with their newest backup."""
    with link.user_session(login.server, login.fingerprint, login.user, login.password) as session:
        return session.rpc().call("machines.list")


def find_machine(rows: list[dict], wanted: str) -> dict:
    """Given the user's machines and a name (any case) or id, return that machine; raise
    NotFoundError naming the machines there are."""
    key = names.machine_name_key(wanted.strip())
    for row in rows:
        if names.machine_name_key(row["name"]) == key or row["id"] == wanted:
            return row
    known = ", ".join(repr(r["name"]) for r in rows) or "none"
    raise NotFoundError(f"you have no computer named {wanted!r}", f"your computers: {known}")


def enrolled_config(paths: Paths) -> AgentConfig | None:
    """Return this computer's configuration, or None if it is not enrolled."""
    try:
        return agent_config.load(paths)
    except NotEnrolledError:
        return None


def is_this_machine(config: AgentConfig | None, wanted: str | None) -> bool:
    """Return whether `wanted` (None = unspecified) names this enrolled computer."""
    if config is None:
        return False
    return wanted is None or wanted == config.machine_id or \
        names.machine_name_key(wanted.strip()) == names.machine_name_key(config.machine_name)


def archives(paths: Paths, wanted: str | None, login: Callable[[], Login]) -> list[dict]:
    """Return the backups of this computer (with its key) or of another of the user's
    computers (with their password)."""
    config = enrolled_config(paths)
    if is_this_machine(config, wanted):
        with link.machine_session(config, paths) as session:
            return session.rpc().call("archives.list", machine_id=config.machine_id)
    if wanted is None:
        raise NotEnrolledError("this computer is not enrolled", "name a computer with --machine NAME")
    credentials = login()
    with link.user_session(credentials.server, credentials.fingerprint, credentials.user,
                           credentials.password) as session:
        rpc = session.rpc()
        machine = find_machine(rpc.call("machines.list"), wanted)
        return rpc.call("archives.list", machine_id=machine["id"])
