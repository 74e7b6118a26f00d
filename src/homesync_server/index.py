"""The index: the one place that talks SQL. SQLite in WAL mode with numbered
migrations; one connection behind one lock, so there is exactly one writer.
The repositories are the source of truth; this is rebuildable from them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from homesync.errors import ConflictError, NotFoundError

# Numbered schema migrations, each a plain SQL script run once, in order, in one
# transaction (PRAGMA user_version records the last one applied).
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT '',
        first_seen REAL NOT NULL,
        gone INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE machines (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL REFERENCES users(name),
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        public_key TEXT NOT NULL,
        enrolled REAL NOT NULL,
        last_seen REAL,
        state TEXT NOT NULL DEFAULT 'active',
        agent_state TEXT NOT NULL DEFAULT '',
        agent_reason TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        UNIQUE (owner, name_key)
    );
    CREATE TABLE archives (
        machine_id TEXT NOT NULL REFERENCES machines(id),
        name TEXT NOT NULL,
        start REAL NOT NULL,
        end REAL NOT NULL,
        files INTEGER NOT NULL,
        original_size INTEGER NOT NULL,
        compressed_size INTEGER NOT NULL,
        deduplicated_size INTEGER NOT NULL,
        result TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (machine_id, name)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        machine_id TEXT,
        source TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX archives_end ON archives (machine_id, end);
    """,
}

_MACHINE_COLUMNS = ("id, owner, name, hostname, public_key, enrolled, last_seen, state, "
                    "agent_state, agent_reason, agent_version")


class Index:
    """Users, machines, archives and audit events."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, params).fetchall()]

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number in sorted(n for n in MIGRATIONS if n > version):
                for statement in filter(str.strip, MIGRATIONS[number].split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0]["user_version"]

    # users

    def record_user(self, name: str, display_name: str = "") -> None:
        """Remember a user who owns (or is about to own) machines."""
        with self._transaction() as db:
            db.execute("INSERT INTO users (name, display_name, first_seen) VALUES (?, ?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET display_name = excluded.display_name, gone = 0",
                       (name, display_name, time.time()))

    def users(self) -> list[dict[str, Any]]:
        return self._query("SELECT name, display_name, first_seen, gone FROM users ORDER BY name")

    # machines

    def add_machine(self, machine: dict[str, Any], name_key: str, audit: dict[str, Any]) -> None:
        """Insert a machine and its enrollment audit event in one transaction; raise
        ConflictError if the owner already has a machine of that name."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO machines (id, owner, name, name_key, hostname, public_key, enrolled, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (machine["id"], machine["owner"], machine["name"], name_key, machine["hostname"],
                     machine["public_key"], machine["enrolled"], machine["enrolled"]))
                self._insert_audit(db, audit)
        except sqlite3.IntegrityError:
            raise ConflictError(f"you already have a computer named {machine['name']!r}",
                                "choose another name") from None

    def name_taken(self, owner: str, name_key: str) -> bool:
        return bool(self._query("SELECT 1 FROM machines WHERE owner = ? AND name_key = ?", (owner, name_key)))

    def machine(self, machine_id: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE id = ?", (machine_id,))
        return rows[0] if rows else None

    def machines(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Return machines (of one owner, or all) with their newest successful archive."""
        where, params = ("WHERE m.owner = ?", (owner,)) if owner else ("", ())
        rows = self._query(
            f"SELECT {', '.join('m.' + c.strip() for c in _MACHINE_COLUMNS.split(','))}, "
            "(SELECT COUNT(*) FROM archives a WHERE a.machine_id = m.id AND a.result != 'failed') AS archives, "
            "(SELECT MAX(a.end) FROM archives a WHERE a.machine_id = m.id AND a.result != 'failed') AS last_backup, "
            "(SELECT a.original_size FROM archives a WHERE a.machine_id = m.id AND a.result != 'failed' "
            " ORDER BY a.end DESC LIMIT 1) AS last_size "
            f"FROM machines m {where} ORDER BY m.owner, m.name", params)
        return rows

    def touch_machine(self, machine_id: str, at: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE machines SET last_seen = ? WHERE id = ?", (at, machine_id))

    def set_agent_state(self, machine_id: str, state: str, reason: str, version: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE machines SET agent_state = ?, agent_reason = ?, agent_version = ? WHERE id = ?",
                       (state, reason, version, machine_id))

    # archives

    def add_archive(self, machine_id: str, archive: dict[str, Any], audit: dict[str, Any]) -> None:
        """Record one backup and its audit event in one transaction (idempotent per name)."""
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM machines WHERE id = ?", (machine_id,)).fetchone():
                raise NotFoundError(f"no machine {machine_id}")
            db.execute(
                "INSERT INTO archives (machine_id, name, start, end, files, original_size, compressed_size, "
                "deduplicated_size, result, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(machine_id, name) DO NOTHING",
                (machine_id, archive["name"], archive["start"], archive["end"], archive["files"],
                 archive["original_size"], archive["compressed_size"], archive["deduplicated_size"],
                 archive["result"], archive.get("error", "")))
            self._insert_audit(db, audit)

    def archives(self, machine_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT name, start, end, files, original_size, compressed_size, deduplicated_size, result, error "
            "FROM archives WHERE machine_id = ? ORDER BY end", (machine_id,))

    # audit

    def audit(self, action: str, actor: str, machine_id: str | None = None, source: str = "",
              **detail: Any) -> None:
        """Append one audit event."""
        with self._transaction() as db:
            self._insert_audit(db, event(action, actor, machine_id, source, **detail))

    @staticmethod
    def _insert_audit(db: sqlite3.Connection, e: dict[str, Any]) -> None:
        db.execute("INSERT INTO audit (at, actor, action, machine_id, source, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   (e["at"], e["actor"], e["action"], e["machine_id"], e["source"],
                    json.dumps(e["detail"], sort_keys=True)))

    def audit_events(self, since: float = 0.0, action: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT id, at, actor, action, machine_id, source, detail FROM audit WHERE at >= ?", [since]
        if action:
            sql += " AND action = ?"
            params.append(action)
        rows = self._query(sql + " ORDER BY id", tuple(params))
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows


def event(action: str, actor: str, machine_id: str | None = None, source: str = "", **detail: Any) -> dict:
    """Return an audit event record, stamped now."""
    return {"at": time.time(), "actor": actor, "action": action, "machine_id": machine_id,
            "source": source, "detail": detail}
