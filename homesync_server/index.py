"""The index on SQLite (the embedded default): WAL mode, numbered migrations, one
connection behind one lock, so there is exactly one writer. The queries themselves are
index_sql's; what only SQLite does (files, PRAGMAs, AUTOINCREMENT) is here.
The repositories are the source of truth; this is rebuildable from them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from homesync.errors import IndexDamagedError
from homesync_server import audit as audit_chain
from homesync_server.borgcauses import server_disk_full
from homesync_server.index_sql import (ARCHIVE_FIGURES_13, FLEET_COLUMNS, FLEET_FIELDS, PRUNING, SqlIndex, admin_actor,
                                       event)

__all__ = ["FLEET_COLUMNS", "FLEET_FIELDS", "MIGRATIONS", "PRUNING", "Index", "SqliteIndex", "admin_actor",
           "event", "read_index_file"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Numbered schema migrations, each a plain SQL script run once, in order, in one
# transaction (PRAGMA user_version records the last one applied). Numbers may have
# gaps (each branch of work takes its own number): what is above user_version runs.
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
    # Reports (issue 5). The audit hash chain (homesync_server/audit.py): existing events
    # are chained by the data step in DATA_MIGRATIONS (SQL has no portable SHA-256);
    # once chained, a row can be neither changed nor deleted through SQL without
    # dropping the guards (tampering that `audit verify` then catches).
    # archive_totals: each machine's archive figures, kept by triggers whoever writes
    # archives (backup reports, prune, reindex), so that a report of 100,000 machines
    # does not aggregate millions of archive rows.
    2: """
    ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit WHEN OLD.hash != '' BEGIN
        SELECT RAISE(ABORT, 'audit events are append-only');
    END;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit BEGIN
        SELECT RAISE(ABORT, 'audit events are append-only');
    END;
    CREATE VIEW archive_figures AS
    SELECT machine_id, SUM(result IN ('success', 'warning')) AS archives,
           MAX(CASE WHEN result IN ('success', 'warning') THEN end END) AS last_backup,
           (SELECT b.original_size FROM archives b WHERE b.machine_id = a.machine_id
            AND b.result IN ('success', 'warning') ORDER BY b.end DESC LIMIT 1) AS last_original_size,
           SUM(deduplicated_size) AS deduplicated_size, SUM(result = 'failed') AS failed
    FROM archives a GROUP BY machine_id;
    CREATE TABLE archive_totals (
        machine_id TEXT PRIMARY KEY,
        archives INTEGER NOT NULL,
        last_backup REAL,
        last_original_size INTEGER,
        deduplicated_size INTEGER NOT NULL,
        failed INTEGER NOT NULL
    );
    INSERT INTO archive_totals SELECT * FROM archive_figures;
    CREATE TRIGGER archive_totals_insert AFTER INSERT ON archives BEGIN
        INSERT OR REPLACE INTO archive_totals SELECT * FROM archive_figures WHERE machine_id = NEW.machine_id;
    END;
    CREATE TRIGGER archive_totals_delete AFTER DELETE ON archives BEGIN
        DELETE FROM archive_totals WHERE machine_id = OLD.machine_id;
        INSERT INTO archive_totals SELECT * FROM archive_figures WHERE machine_id = OLD.machine_id;
    END;
    CREATE TRIGGER archive_totals_update AFTER UPDATE ON archives BEGIN
        DELETE FROM archive_totals WHERE machine_id IN (OLD.machine_id, NEW.machine_id);
        INSERT INTO archive_totals SELECT * FROM archive_figures WHERE machine_id IN (OLD.machine_id, NEW.machine_id);
    END
    """,
    # Drills, legal holds and mass-change flags (issue 6). A mass_change row with no
    # released_at freezes the machine's pruning. Holds and flags are also kept in the
    # repository's metadata file, so that reindex brings them back.
    3: """
    CREATE TABLE drills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        machine_id TEXT NOT NULL REFERENCES machines(id),
        started REAL NOT NULL,
        finished REAL NOT NULL,
        archive TEXT NOT NULL DEFAULT '',
        result TEXT NOT NULL,
        failures TEXT NOT NULL DEFAULT '[]',
        files INTEGER,
        bytes INTEGER,
        check_seconds REAL,
        extract_seconds REAL,
        throughput REAL,
        rpo_seconds REAL,
        hashed_files INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX drills_machine ON drills (machine_id, started);
    CREATE TABLE holds (
        machine_id TEXT NOT NULL REFERENCES machines(id),
        archive TEXT NOT NULL,
        added REAL NOT NULL,
        added_by TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (machine_id, archive)
    );
    CREATE TABLE mass_change (
        machine_id TEXT PRIMARY KEY REFERENCES machines(id),
        archive TEXT NOT NULL,
        share REAL NOT NULL,
        baseline REAL NOT NULL,
        flagged_at REAL NOT NULL,
        released_at REAL,
        released_by TEXT NOT NULL DEFAULT ''
    )
    """,
    # Login throttling (issue 11): one row per account (canonical name) and per source
    # address with recent attempts, so that a restart does not clear a block and every
    # process sees the same counts (rules: logins.py).
    4: """
    CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        attempts INTEGER NOT NULL DEFAULT 0,
        blocks INTEGER NOT NULL DEFAULT 0,
        blocked_until REAL NOT NULL DEFAULT 0,
        last_attempt REAL NOT NULL DEFAULT 0,
        refused INTEGER NOT NULL DEFAULT 0,
        refused_first REAL NOT NULL DEFAULT 0,
        refused_last REAL NOT NULL DEFAULT 0,
        actor TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        forget_at REAL NOT NULL
    );
    CREATE INDEX login_throttle_forget ON login_throttle (forget_at)
    """,
    # Restore grants (issue 11): one-off keys for a restore, here rather than in one
    # process's memory, so that a restart keeps (or keeps revoked) what was granted.
    5: """
    CREATE TABLE restore_grants (
        public_key TEXT PRIMARY KEY,
        repository_id TEXT NOT NULL,
        user TEXT NOT NULL,
        template INTEGER NOT NULL DEFAULT 0,
        granted REAL NOT NULL,
        last_used REAL NOT NULL,
        expires REAL NOT NULL,
        idle REAL NOT NULL
    );
    CREATE INDEX restore_grants_repository ON restore_grants (repository_id)
    """,
    # Observed times and the post-session check (issue 11 items 2 and 3, issue 18). An
    # archive's observed time is when the server saw the session that made it (NULL:
    # indexed before this, or by reindex: its own time is used); a recovery point's time
    # is the older of that and its claimed end (a claim can only make it older); a
    # flagged archive (its claimed time outside that session) is never counted;
    # archive_id is borg's id once a check saw it in the repository. history: each
    # machine's last good repository key and transaction, the window of sessions not yet
    # checked, and a rollback's freeze.
    6: """
    ALTER TABLE archives ADD COLUMN observed REAL;
    ALTER TABLE archives ADD COLUMN flag TEXT NOT NULL DEFAULT '';
    ALTER TABLE archives ADD COLUMN archive_id TEXT NOT NULL DEFAULT '';
    CREATE TABLE history (
        machine_id TEXT PRIMARY KEY REFERENCES machines(id),
        key TEXT NOT NULL DEFAULT '',
        txn INTEGER,
        checked_at REAL,
        pending_since REAL,
        pending_until REAL,
        frozen_at REAL,
        frozen_reason TEXT NOT NULL DEFAULT '',
        released_at REAL,
        released_by TEXT NOT NULL DEFAULT ''
    );
    DROP VIEW archive_figures;
    CREATE VIEW archive_figures AS
    SELECT machine_id, SUM(result IN ('success', 'warning') AND flag = '') AS archives,
           MAX(CASE WHEN result IN ('success', 'warning') AND flag = '' THEN MIN(COALESCE(observed, end), end) END)
               AS last_backup,
           (SELECT b.original_size FROM archives b WHERE b.machine_id = a.machine_id AND b.flag = ''
            AND b.result IN ('success', 'warning') ORDER BY MIN(COALESCE(b.observed, b.end), b.end) DESC LIMIT 1)
               AS last_original_size,
           SUM(deduplicated_size) AS deduplicated_size, SUM(result = 'failed') AS failed
    FROM archives a GROUP BY machine_id;
    DELETE FROM archive_totals;
    INSERT INTO archive_totals SELECT * FROM archive_figures
    """,
    # Issue 18: the keys an adopt replaced, so that the old computer is told by whom and
    # when instead of "key refused" (a number of its own: other branches take 7 and up).
    7: """
    CREATE TABLE replaced_keys (
        public_key TEXT PRIMARY KEY,
        machine_id TEXT NOT NULL REFERENCES machines(id),
        replaced_at REAL NOT NULL,
        hostname TEXT NOT NULL
    )
    """,
    # Issue 19: the fleet policy. Each change is a new version holding every layer (site,
    # groups, users, machines), so a version is a whole policy that can be shown or
    # restored as it was; group_members puts local users (or anyone) in groups beside the
    # directory's; user_groups keeps the groups last read from the directory, so a policy
    # can be computed while it is down. A machine's applied version is what it reported.
    8: """
    CREATE TABLE policy_versions (
        version INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        scope TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        layers TEXT NOT NULL,
        changed TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE group_members (
        group_name TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (group_name, user)
    );
    CREATE TABLE user_groups (
        user TEXT PRIMARY KEY,
        groups TEXT NOT NULL,
        at REAL NOT NULL
    );
    ALTER TABLE machines ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE machines ADD COLUMN policy_applied REAL;
    ALTER TABLE machines ADD COLUMN policy_contact REAL
    """,
    # Issue 12: each machine's summary (archive_totals) in plain SQL that PostgreSQL runs
    # as well: CASE instead of SQLite's sums of booleans and two-argument MIN, "end"
    # quoted (a reserved word there), a delete and an insert instead of INSERT OR
    # REPLACE (migration 2's delete and update triggers were plain already and read the
    # view by name). The triggers still keep it in the transaction that writes the archive,
    # whoever writes (backup reports, post-session checks, prune, reindex). The view's
    # figures are the same as migration 6's, so the table is not recomputed. The index
    # covers the report's join, so that reading 100,000 summaries reads no table rows;
    # the other one gives the report its machines by owner and name without a sort
    # (byte order: SQLite's BINARY collation; a PostgreSQL schema declares these
    # columns COLLATE "C" so that the same query gives the same order).
    13: """
    DROP TRIGGER archive_totals_insert;
    DROP VIEW archive_figures;
    """ + ARCHIVE_FIGURES_13 + """
    CREATE TRIGGER archive_totals_insert AFTER INSERT ON archives BEGIN
        DELETE FROM archive_totals WHERE machine_id = NEW.machine_id;
        INSERT INTO archive_totals SELECT * FROM archive_figures WHERE machine_id = NEW.machine_id;
    END;
    CREATE INDEX archive_totals_figures ON archive_totals
        (machine_id, archives, last_backup, last_original_size, deduplicated_size, failed);
    CREATE INDEX machines_owner_name ON machines (owner, name)
    """,
    # Issue 14: several server nodes. Each `serve` writes its heartbeat into nodes (a
    # node whose heartbeat is older than a few of its own intervals is dead: its borg
    # locks may be broken, and its leases have expired by then); leases hold the jobs
    # that must run once at a time (a prune of one repository, the drills), each with
    # an expiry its holder keeps pushing back.
    14: """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        sessions INTEGER NOT NULL DEFAULT 0,
        pid INTEGER NOT NULL DEFAULT 0,
        started REAL NOT NULL,
        heartbeat REAL NOT NULL,
        heartbeat_seconds REAL NOT NULL
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        node TEXT NOT NULL,
        taken REAL NOT NULL,
        expires REAL NOT NULL
    )
    """,
    # Issue 14: the boot id of the machine a node runs on (/proc/sys/kernel/random/boot_id,
    # new at every boot, different on cloned machines): a starting node tells at once
    # whether its id's row was written on this machine since its boot, where the pid says
    # whether that node still runs.
    16: """
    ALTER TABLE nodes ADD COLUMN boot TEXT NOT NULL DEFAULT ''
    """,
}


@contextmanager
def _full_disk_named(path: Path) -> Iterator[None]:
    """Turn SQLite's "database or disk is full" into the server's disk-full error."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if getattr(e, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL and "disk is full" not in str(e):
            raise
        logger.error("the index %s could not be written: the disk is full", path)
        raise server_disk_full("the server's index") from None


_FLEET_CHUNK = 2000  # rows of the fleet read at a time
# SQLite's answers for a file it cannot read as a database (overwritten header, torn pages).
_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
REINDEX_HINT = ("stop the server and run homesync-server reindex --force: it keeps the damaged file aside "
                "and rebuilds the index from the repositories")


class SqliteIndex(SqlIndex):
    """The index in one SQLite file (index_store's protocols, all of them)."""

    integrity_errors = (sqlite3.IntegrityError,)
    engine = "sqlite"

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """Open the index at path (migrated to the current schema); read_only: only read
        an index that is migrated already (no write lock taken, ever)."""
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            with damage_named(path):
                self._open(read_only)
        except IndexDamagedError:
            if self._db is not None:
                self._db.close()
            raise

    @classmethod
    def from_url(cls, url: str, read_only: bool = False) -> "SqliteIndex":
        """Open the index a sqlite:///PATH URL names."""
        return cls(_path(url), read_only)

    def _open(self, read_only: bool) -> None:
        if read_only:
            self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=10,
                                       check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            return
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        _wal(self._db)
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def check_integrity(self) -> None:
        """Raise IndexDamagedError unless SQLite's quick check finds every page sound."""
        found = [next(iter(r.values())) for r in self._query("PRAGMA quick_check")]
        if found != ["ok"]:
            raise IndexDamagedError(f"the index {self.path} is damaged ({found[0]})", REINDEX_HINT)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, damage_named(self.path), _full_disk_named(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back itself (a full disk)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        with self._lock, damage_named(self.path):
            return [dict(r) for r in self._db.execute(sql, params).fetchall()]

    def _chunks(self, sql: str, params: tuple = ()) -> Iterator[list[tuple]]:
        with self._lock, damage_named(self.path):
            cursor = self._db.cursor()
            cursor.row_factory = None
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(_FLEET_CHUNK):
                yield rows

    def _audit_head(self, db: sqlite3.Connection) -> tuple[int | None, str | None, int]:
        last = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        sequence = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
        return (last[0] if last else None, last[1] if last else None, sequence[0] if sequence else 0)

    @contextmanager
    def _summaries_after(self, db: sqlite3.Connection) -> Iterator[None]:
        trigger = db.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'archive_totals_insert'"
                             ).fetchone()[0]
        db.execute("DROP TRIGGER archive_totals_insert")  # DDL is transactional here: an error puts it back
        yield
        db.execute("DELETE FROM archive_totals")
        db.execute("INSERT INTO archive_totals SELECT * FROM archive_figures")
        db.execute(trigger)

    def audit_sequence(self) -> int:
        """Return the highest audit id ever handed out (AUTOINCREMENT's high-water mark)."""
        rows = self._query("SELECT seq FROM sqlite_sequence WHERE name = 'audit'")
        return rows[0]["seq"] if rows else 0

    def _migrate(self) -> None:
        """Run every migration not applied yet, in order. Which ones were applied is kept
        in schema_migrations (before it existed: 1 to user_version), so that a number
        added below the highest one applied (branches merged) still runs."""
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY)")
            applied = {r[0] for r in db.execute("SELECT number FROM schema_migrations")} or set(range(1, version + 1))
            for number in sorted(set(MIGRATIONS) - applied):
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                if number in DATA_MIGRATIONS:
                    DATA_MIGRATIONS[number](db)
                applied.add(number)
            db.executemany("INSERT OR IGNORE INTO schema_migrations (number) VALUES (?)", [(n,) for n in applied])
            db.execute(f"PRAGMA user_version = {max(applied, default=0)}")

    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0]["user_version"]

    def applied_migrations(self) -> set[int]:
        return {r["number"] for r in self._query("SELECT number FROM schema_migrations")}


# The name the tests and older code know the SQLite index by.
Index = SqliteIndex


@contextmanager
def damage_named(path: Path) -> Iterator[None]:
    """Turn SQLite's "not a database" and "malformed" errors into IndexDamagedError
    naming the file and what to do; let every other error through."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        if not getattr(e, "sqlite_errorname", "").startswith(_DAMAGE):
            raise
        raise IndexDamagedError(f"the index {path} is damaged ({e})", REINDEX_HINT) from None


def set_aside(path: Path, why: str) -> str:
    """Move an index file (with its -wal and -shm) to <name>.<why>-<time>; return that name."""
    name = f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            os.replace(old, old.with_name(name + suffix))
    return name


# The engine's entries for index_store's table: open_url(url, read_only), missing,
# set_aside_url, read_set_aside_url and check, given a sqlite:///PATH URL.

def _wal(db: sqlite3.Connection, wait: float = 10.0) -> None:
    """Put the index in WAL mode. Switching a new file's journal takes a lock SQLite's
    busy wait does not cover: servers starting at once wait for each other here."""
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_url(url: str, read_only: bool = False, statement_timeout: float = 30.0, pool_size: int = 16) -> SqliteIndex:
    """Open the SQLite index a URL names (its lock wait, not statement_timeout, bounds a
    write; one connection per thread, no pool)."""
    return SqliteIndex.from_url(url, read_only)


def missing(url: str) -> bool:
    return not _path(url).exists()


def set_aside_url(url: str, why: str) -> str:
    return set_aside(_path(url), why)


def read_set_aside_url(url: str, name: str, read: Callable[[SqliteIndex], T]) -> T | None:
    return read_index_file(_path(url).with_name(name), read)


def check(url: str) -> str:
    """Return "PATH is sound (schema N)"; raise IndexDamagedError saying why not. Where the
    file cannot be opened the usual way (a full disk leaves no room for WAL's
    shared-memory file), it is read as an immutable file instead."""
    path = _path(url)
    try:
        try:
            found, version = _quick_check(path, "mode=ro")
        except sqlite3.OperationalError:
            found, version = _quick_check(path, "immutable=1")
    except sqlite3.Error as e:
        raise IndexDamagedError(f"{path} cannot be read ({e})", REINDEX_HINT) from None
    if found != ["ok"]:
        raise IndexDamagedError(f"{path} is damaged ({found[0]})", REINDEX_HINT)
    return f"{path} is sound (schema {version})"


def _quick_check(path: Path, mode: str) -> tuple[list[str], int]:
    db = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True, timeout=10)
    try:
        return [r[0] for r in db.execute("PRAGMA quick_check")], db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite://"))


def read_index_file(path: Path, read: Callable[[SqliteIndex], T]) -> T | None:
    """Return what read takes from an index file (one set aside), opened read-only; None
    if SQLite cannot read it (damaged, or older than the migration that made what read
    asks for)."""
    try:
        index = Index(path, read_only=True)
    except (IndexDamagedError, sqlite3.Error):
        return None
    try:
        return read(index)
    except (IndexDamagedError, sqlite3.Error):
        return None
    finally:
        index.close()


def _chain_existing_audit(db: sqlite3.Connection) -> None:
    """Chain the audit events written before the hash chain existed, in id order."""
    rows = [dict(r) for r in db.execute(
        "SELECT id, at, actor, action, machine_id, source, detail FROM audit ORDER BY id")]
    db.executemany("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?",
                   [(prev, digest, rid) for rid, prev, digest in audit_chain.chain(rows)])


# Steps that need more than SQL, run right after the migration of the same number.
DATA_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _chain_existing_audit}


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into its statements (a trigger keeps the semicolons of
    its body)."""
    pending = ""
    for chunk in script.split(";"):
        pending += chunk + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
