"""`homesync-server machines` and `user list`: every machine (or one user's) with its
newest backup, and every user with their machines."""

from __future__ import annotations

from homesync.errors import IdentityUnavailableError
from homesync_server.config import Layout
from homesync_server.services import Services


def machines(layout: Layout, user: str | None) -> list[dict]:
    """Return the machines in the index, with whether their owner is still known."""
    with Services.open(layout) as services:
        rows = services.index.machines(user)
        known: dict[str, bool] = {}
        for row in rows:
            if row["owner"] not in known:
                known[row["owner"]] = _still_known(services, row["owner"])
            row["owner_gone"] = not known[row["owner"]]
        return rows


def nodes(layout: Layout) -> list[dict]:
    """Return every server node the index knows (issue 14): its last heartbeat and its
    age, sessions, version, state, whether it is dead, and the leases it holds now."""
    import time

    from homesync_server import config as server_config, nodes as server_nodes
    from homesync_server.index_store import open_index

    config = server_config.load(layout)
    index = open_index(layout, read_only=True, config=config)
    try:
        now = time.time()
        held: dict[str, list[str]] = {}
        for lease in index.leases():
            if lease["expires"] > now:
                held.setdefault(lease["node"], []).append(lease["name"])
        return [dict(n, leases=held.get(n["id"], []))
                for n in server_nodes.described(index.nodes(), now, config.node.dead_after)]
    finally:
        index.close()


def _still_known(services: Services, name: str) -> bool:
    try:
        return services.identity.lookup(name) is not None
    except IdentityUnavailableError:
        return True  # unknown is not gone: never flag people because the directory is down


def users(layout: Layout) -> list[dict]:
    """Return everyone the identity backend knows, and everyone who owns machines, with
    their machines; owners the directory no longer has are marked gone."""
    with Services.open(layout) as services:
        people = {p.name: p for p in services.identity.people()}
        owned: dict[str, list[dict]] = {}
        for row in services.index.machines():
            owned.setdefault(row["owner"], []).append(row)
        rows = []
        for name in sorted(people.keys() | owned.keys()):
            person, machines = people.get(name), owned.get(name, [])
            backups = [m["last_backup"] for m in machines if m["last_backup"]]
            rows.append({"name": name, "display_name": person.display_name if person else "",
                         "mail": person.mail if person else "", "admin": bool(person and person.admin),
                         "gone": person is None, "machines": [m["name"] for m in machines],
                         "last_backup": max(backups) if backups else None})
        return rows
