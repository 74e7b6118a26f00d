"""The index's queries about server nodes (issue 14), in SQL both engines run: each
node's heartbeat row, and the leases of the jobs that must run once at a time. A part
of SqlIndex (it inherits this), kept apart so that each module stays readable.
"""

from __future__ import annotations

from typing import Any

_NODE_COLUMNS = ("id", "address", "version", "state", "sessions", "pid", "started", "heartbeat",
                 "heartbeat_seconds", "boot")
_LEASE_COLUMNS = ("name", "holder", "node", "taken", "expires")


class NodesAndLeases:
    """Heartbeats and leases. Every write is one short transaction; a lease is taken
    with one INSERT … ON CONFLICT DO UPDATE … WHERE, so of two nodes taking it at once
    exactly one gets it, on either engine. _transaction and _query are SqlIndex's."""

    # nodes

    def node_heartbeat(self, node: dict[str, Any]) -> None:
        """Write a node's row (every key of _NODE_COLUMNS): registering it, or its heartbeat."""
        with self._transaction() as db:
            db.execute(f"INSERT INTO nodes ({', '.join(_NODE_COLUMNS)}) "
                       f"VALUES ({', '.join(':' + c for c in _NODE_COLUMNS)}) ON CONFLICT (id) DO UPDATE SET "
                       + ", ".join(f"{c} = excluded.{c}" for c in _NODE_COLUMNS if c != "id"), node)

    def nodes(self) -> list[dict[str, Any]]:
        """Return every node that ever registered, by id."""
        return self._query(f"SELECT {', '.join(_NODE_COLUMNS)} FROM nodes ORDER BY id")

    def forget_node(self, node_id: str) -> bool:
        """Remove a node's row (one taken out of service for good); return False if there was none."""
        with self._transaction() as db:
            return bool(db.execute("DELETE FROM nodes WHERE id = ?", (node_id,)).rowcount)

    # leases

    def take_lease(self, name: str, holder: str, node: str, seconds: float, now: float) -> dict[str, Any]:
        """Take the lease name for holder (on node) until now + seconds, if nobody holds
        it, its holder let it expire, or holder has it already (then it is renewed);
        return the lease as it stands after: its holder says who got it."""
        with self._transaction() as db:
            db.execute("INSERT INTO leases (name, holder, node, taken, expires) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, node = excluded.node, "
                       "taken = CASE WHEN leases.holder = excluded.holder THEN leases.taken ELSE excluded.taken END, "
                       "expires = excluded.expires WHERE leases.expires <= ? OR leases.holder = excluded.holder",
                       (name, holder, node, now, now + seconds, now))
            row = db.execute(f"SELECT {', '.join(_LEASE_COLUMNS)} FROM leases WHERE name = ?", (name,)).fetchone()
            return dict(zip(_LEASE_COLUMNS, tuple(row)))

    def renew_lease(self, name: str, holder: str, seconds: float, now: float) -> bool:
        """Push holder's lease out to now + seconds; return False if holder no longer has
        it (it expired and another took it, or it was released)."""
        with self._transaction() as db:
            return bool(db.execute("UPDATE leases SET expires = ? WHERE name = ? AND holder = ?",
                                   (now + seconds, name, holder)).rowcount)

    def release_lease(self, name: str, holder: str) -> bool:
        """Give up holder's lease; return False if holder did not have it."""
        with self._transaction() as db:
            return bool(db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)).rowcount)

    def leases(self) -> list[dict[str, Any]]:
        """Return every lease (live and expired ones not taken again), by name."""
        return self._query(f"SELECT {', '.join(_LEASE_COLUMNS)} FROM leases ORDER BY name")
