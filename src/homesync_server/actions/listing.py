"""`homesync-server machines`: every machine (or one user's), with its newest backup."""

from __future__ import annotations

from homesync_server.config import Layout
from homesync_server.services import Services


def machines(layout: Layout, user: str | None) -> list[dict]:
    """Return the machines in the index, with whether their owner is still known."""
    services = Services.open(layout)
    try:
        rows = services.index.machines(user)
        known: dict[str, bool] = {}
        for row in rows:
            if row["owner"] not in known:
                known[row["owner"]] = _still_known(services, row["owner"])
            row["owner_gone"] = not known[row["owner"]]
        return rows
    finally:
        services.close()


def _still_known(services: Services, name: str) -> bool:
    from homesync.errors import IdentityUnavailableError
    try:
        return services.identity.lookup(name) is not None
    except IdentityUnavailableError:
        return True  # unknown is not gone: never flag people because the directory is down
