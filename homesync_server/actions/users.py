"""`homesync-server user passwd|remove`: an admin changes a local user's password or
removes the user. A user who still has active machines is removed only with them
retired (their backups stay restorable, by id, for an admin); each change is audited."""

from __future__ import annotations

from typing import Any

from homesync.errors import ConfigError, ConflictError, NotFoundError
from homesync_server import config as server_config
from homesync_server.actions import lifecycle
from homesync_server.actions.setup import admin_actor
from homesync_server.config import Layout
from homesync_server.identity.local import LocalIdentity
from homesync_server.index_store import open_index


def _local_users(layout: Layout) -> LocalIdentity:
    """Return the local user list; raise ConfigError where users come from LDAP."""
    if server_config.load(layout).identity.backend != "local":
        raise ConfigError("users come from the directory (LDAP) on this server",
                          "change passwords and accounts there")
    return LocalIdentity(layout.data / "users.json")


def set_password(layout: Layout, name: str, password: str) -> None:
    """Replace a local user's password. Raise NotFoundError for an unknown user."""
    _local_users(layout).set_password(name, password)
    _audit(layout, "user_passwd", user=name)


def remove(layout: Layout, name: str, retire_machines: bool) -> dict[str, Any]:
    """Remove a local user; with retire_machines, retire their active machines first.
    Raise ConflictError if they have active machines and retire_machines is false,
    NotFoundError for an unknown user."""
    users = _local_users(layout)
    if users.lookup(name) is None:
        raise NotFoundError(f"no user {name!r}", "see `homesync-server user list`")
    index = open_index(layout, read_only=True)
    try:
        active = [m for m in index.machines(name) if m["state"] == "active"]
    finally:
        index.close()
    if active and not retire_machines:
        listed = ", ".join(f"{m['name']!r} ({m['id']})" for m in active)
        raise ConflictError(f"{name} still has active machines: {listed}",
                            "retire or transfer them first, or pass --retire-machines")
    for machine in active:
        lifecycle.retire(layout, machine["id"])
    users.remove(name)
    _audit(layout, "user_remove", user=name, retired=[m["id"] for m in active])
    return {"user": name, "retired": [m["id"] for m in active]}


def _audit(layout: Layout, action: str, **detail: Any) -> None:
    index = open_index(layout)
    try:
        index.audit(action, admin_actor(), **detail)
    finally:
        index.close()
