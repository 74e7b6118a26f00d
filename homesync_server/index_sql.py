"""The index's queries, in SQL that SQLite and PostgreSQL both run: what the index
holds (index_store's protocols) written once. Each engine's module (index: SQLite,
index_postgres: PostgreSQL) supplies the connection, transactions, migrations and the
few steps that differ (the audit log's next id, locks between processes).
"""

from __future__ import annotations

import getpass
import json
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from homesync.errors import ConflictError, NotFoundError
from homesync_server import audit as audit_chain
from homesync_server.index_nodes import NodesAndLeases
from homesync_server.logins import Record

# archives.archive_id of an archive the server's own prune is deleting.
PRUNING = "-"

# The view of migration 13 (both engines), the report's per-machine figures of its
# archives; frozen as that migration's text: a later change is a new migration.
ARCHIVE_FIGURES_13 = """CREATE VIEW archive_figures AS
SELECT a.machine_id,
       SUM(CASE WHEN a.result IN ('success', 'warning') AND a.flag = '' THEN 1 ELSE 0 END) AS archives,
       MAX(CASE WHEN a.result IN ('success', 'warning') AND a.flag = ''
                THEN CASE WHEN a.observed < a."end" THEN a.observed ELSE a."end" END END) AS last_backup,
       (SELECT b.original_size FROM archives b
        WHERE b.machine_id = a.machine_id AND b.flag = '' AND b.result IN ('success', 'warning')
        ORDER BY CASE WHEN b.observed < b."end" THEN b.observed ELSE b."end" END DESC LIMIT 1)
           AS last_original_size,
       SUM(a.deduplicated_size) AS deduplicated_size,
       SUM(CASE WHEN a.result = 'failed' THEN 1 ELSE 0 END) AS failed
FROM archives a GROUP BY a.machine_id;"""

# What a post-session check takes from borg for a row the agent reported as interrupted or failed.
_FIGURES = ("start", "end", "files", "original_size", "compressed_size", "deduplicated_size", "result", "error")
# What Index.fleet_records returns for each machine, in this order (the report's
# records): each field's name and the SQL that reads it from machines m and their
# summary t (archive_totals). A column of the report that the index holds is one line here.
FLEET_FIELDS = {
    "id": "m.id", "owner": "m.owner", "name": "m.name", "hostname": "m.hostname", "enrolled": "m.enrolled",
    "last_seen": "m.last_seen", "state": "m.state", "agent_state": "m.agent_state",
    "agent_reason": "m.agent_reason", "agent_version": "m.agent_version",
    "archives": "COALESCE(t.archives, 0)", "last_backup": "t.last_backup", "original_size": "t.last_original_size",
    "deduplicated_size": "COALESCE(t.deduplicated_size, 0)", "failed": "COALESCE(t.failed, 0)",
    # the report's fleet-policy part (reports.policy) reads these in the same pass
    "policy_version": "m.policy_version", "policy_contact": "m.policy_contact",
}
FLEET_COLUMNS = tuple(FLEET_FIELDS)
# What load_fleet loads: each table's columns, in the order of its rows' tuples (parents first).
LOAD_COLUMNS = {
    "users": ("name", "display_name", "first_seen"),
    "machines": ("id", "owner", "name", "name_key", "hostname", "public_key", "enrolled", "last_seen", "state",
                 "agent_state", "agent_reason", "agent_version", "policy_version", "policy_contact"),
    "archives": ("machine_id", "name", "start", "end", "files", "original_size", "compressed_size",
                 "deduplicated_size", "result", "error"),
    "drills": ("machine_id", "started", "finished", "archive", "result", "failures", "files", "bytes",
               "check_seconds", "extract_seconds", "throughput", "rpo_seconds", "hashed_files"),
    "mass_change": ("machine_id", "archive", "share", "baseline", "flagged_at"),
}
_AUDIT_COLUMNS = ("id", "at", "actor", "action", "machine_id", "source", "detail", "prev_hash", "hash")
# Every table the index keeps, parents first (archive_totals is derived from archives); not the
# nodes' heartbeats and leases (issue 14), which say what runs now and mean nothing in another index.
TABLES = ("users", "machines", "archives", "audit", "drills", "holds", "mass_change", "login_throttle",
          "restore_grants", "history", "replaced_keys", "policy_versions", "group_members", "user_groups")
_END = 'a."end"'
# An adopt's replaced key: a later replacement of the same key wins (INSERT OR REPLACE, portably).
_REPLACE_KEY = ("ON CONFLICT (public_key) DO UPDATE SET machine_id = excluded.machine_id, "
                "replaced_at = excluded.replaced_at, hostname = excluded.hostname")
_MACHINE_COLUMNS = ("id, owner, name, hostname, public_key, enrolled, last_seen, state, "
                    "agent_state, agent_reason, agent_version")
# An archive's recovery point: the older of its observed time and its claimed end
# (observed NULL: its end). CASE rather than SQLite's two-argument MIN, so both engines run it.
_POINT = "CASE WHEN {a}.observed < {a}.\"end\" THEN {a}.observed ELSE {a}.\"end\" END"


class SqlIndex(NodesAndLeases):
    """Users, machines, archives and audit events: every query of the index. Statements
    use qmark (?) or named (:name) parameters; an engine's connection takes both. Every
    write is one transaction (all of it or nothing); a method that also records an audit
    event appends it in that same transaction."""

    # The engine's exception for a violated constraint (unique name, foreign key).
    integrity_errors: tuple[type[BaseException], ...] = ()

    # what each engine supplies

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """Yield a connection in a write transaction, committed on exit (rolled back on an error)."""
        raise NotImplementedError
        yield

    def _query(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        """Return the rows of one read, as dicts."""
        raise NotImplementedError

    def _chunks(self, sql: str, params: tuple = ()) -> Iterator[list[tuple]]:
        """Yield the rows of one read as plain tuples, a few thousand at a time."""
        raise NotImplementedError

    def _serialise(self, db: Any, name: str) -> None:
        """Within db's transaction, wait until no other transaction holds name (released
        at commit). SQLite needs nothing: it has one writer at a time."""

    def _audit_head(self, db: Any) -> tuple[int | None, str | None, int]:
        """Return the newest audit row's id and hash (None, None: none) and the highest id
        ever handed out, within db's transaction."""
        raise NotImplementedError

    def _audit_appended(self, db: Any, row_id: int) -> None:
        """Record that row_id was handed out (SQLite's AUTOINCREMENT does it itself)."""

    def _insert_rows(self, db: Any, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
        """Insert rows (tuples in the order of columns) into table within db's transaction,
        as fast as the engine can (PostgreSQL: COPY)."""
        db.executemany(f"INSERT INTO {table} ({', '.join(_quoted(columns))}) "
                       f"VALUES ({', '.join('?' * len(columns))})", rows)

    @contextmanager
    def _summaries_after(self, db: Any) -> Iterator[None]:
        """Within db's transaction, let the block write archives without keeping each
        machine's summary row by row (a trigger per row), then compute every summary once."""
        raise NotImplementedError
        yield

    def _analyze(self, db: Any) -> None:
        """Refresh the planner's statistics (after a bulk load)."""
        db.execute("ANALYZE")

    def _bucket(self, column: str) -> str:
        """Return SQL for the whole number of buckets (the next parameter) in column."""
        return f"CAST({column} / ? AS INTEGER)"

    def close(self) -> None:
        raise NotImplementedError

    def row_counts(self) -> dict[str, int]:
        """Return how many rows each table holds (what a move to another engine must keep)."""
        return {t: self._query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in TABLES}

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
        except self.integrity_errors:
            raise ConflictError(f"you already have a computer named {machine['name']!r}",
                                "choose another name") from None

    def name_taken(self, owner: str, name_key: str) -> bool:
        return bool(self._query("SELECT 1 FROM machines WHERE owner = ? AND name_key = ?", (owner, name_key)))

    def machine_ids(self) -> set[str]:
        """Return the ids of every machine the index lists."""
        return {r["id"] for r in self._query("SELECT id FROM machines")}

    def machine(self, machine_id: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE id = ?", (machine_id,))
        return rows[0] if rows else None

    def machines(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Return machines (of one owner, or all) with their newest successful archive
        (by observed time; flagged archives are not counted, only their number given)
        and whether a history rollback froze them."""
        where, params = ("WHERE m.owner = ?", (owner,)) if owner else ("", ())
        counted = "a.machine_id = m.id AND a.result != 'failed' AND a.flag = ''"
        rows = self._query(
            f"SELECT {', '.join('m.' + c.strip() for c in _MACHINE_COLUMNS.split(','))}, "
            f"(SELECT COUNT(*) FROM archives a WHERE {counted}) AS archives, "
            f"(SELECT MAX({_POINT.format(a='a')}) FROM archives a WHERE {counted}) AS last_backup, "
            f"(SELECT a.original_size FROM archives a WHERE {counted} "
            f" ORDER BY {_POINT.format(a='a')} DESC LIMIT 1) AS last_size, "
            "(SELECT COUNT(*) FROM archives a WHERE a.machine_id = m.id AND a.flag != '') AS flagged_archives, "
            "(SELECT h.frozen_at IS NOT NULL AND h.released_at IS NULL FROM history h "
            " WHERE h.machine_id = m.id) AS history_frozen "
            f"FROM machines m {where} ORDER BY m.owner, m.name", params)
        for row in rows:
            row["history_frozen"] = bool(row["history_frozen"])
        return rows

    def replace_machine_key(self, machine_id: str, public_key: str, hostname: str, audit: dict[str, Any]) -> None:
        """Give a machine a new key and host (adoption: the old key is refused from now on),
        with its audit event, in one transaction."""
        with self._transaction() as db:
            db.execute("INSERT INTO replaced_keys (public_key, machine_id, replaced_at, hostname) "
                       f"SELECT public_key, id, ?, ? FROM machines WHERE id = ? {_REPLACE_KEY}",
                       (audit["at"], hostname, machine_id))
            db.execute("UPDATE machines SET public_key = ?, hostname = ?, last_seen = ? WHERE id = ?",
                       (public_key, hostname, audit["at"], machine_id))
            self._insert_audit(db, audit)

    def revoked_key(self, machine_id: str, public_key: str) -> dict[str, Any] | None:
        """Given a machine id and a key that may not log in, return why if it is one of
        that machine's own: {"why": "replaced", "at", "hostname", "name"} (an adopt) or
        {"why": "retired", "at", "name"}; None for any other key."""
        rows = self._query("SELECT k.replaced_at AS at, k.hostname, m.name FROM replaced_keys k "
                           "JOIN machines m ON m.id = k.machine_id WHERE k.public_key = ? AND k.machine_id = ?",
                           (public_key, machine_id))
        if rows:
            return dict(rows[0], why="replaced")
        machine = self.machine(machine_id)
        if not machine or machine["state"] != "retired" or machine["public_key"] != public_key:
            return None
        # only for the holder of the retired key: the one lookup in the audit by machine
        retired = self._query("SELECT at FROM audit WHERE action = 'machine_retire' AND machine_id = ? "
                              "ORDER BY id DESC LIMIT 1", (machine_id,))
        return {"why": "retired", "at": retired[0]["at"] if retired else None, "name": machine["name"]}

    def replaced_keys(self) -> dict[str, list[dict[str, Any]]]:
        """Return, per machine id, the keys an adopt replaced (public_key, replaced_at, hostname), oldest first."""
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self._query("SELECT machine_id, public_key, replaced_at, hostname FROM replaced_keys "
                               "ORDER BY replaced_at"):
            found.setdefault(row.pop("machine_id"), []).append(row)
        return found

    def touch_machine(self, machine_id: str, at: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE machines SET last_seen = ? WHERE id = ?", (at, machine_id))

    def set_agent_state(self, machine_id: str, state: str, reason: str, version: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE machines SET agent_state = ?, agent_reason = ?, agent_version = ? WHERE id = ?",
                       (state, reason, version, machine_id))

    # fleet policy (issue 19)

    def policy_version(self) -> dict[str, Any] | None:
        """Return the newest policy version (version, at, actor, scope, target, layers), or None."""
        rows = self._query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
        return _policy_row(rows[0]) if rows else None

    def policy_versions(self) -> list[dict[str, Any]]:
        return [_policy_row(r) for r in self._query("SELECT * FROM policy_versions ORDER BY version")]

    def add_policy_version(self, scope: str, target: str, layers: dict, changed: list[str], actor: str,
                           audit: dict[str, Any]) -> int:
        """Store a new version (the next number) and its audit event in one transaction; return its number."""
        with self._transaction() as db:
            self._serialise(db, "policy_versions")
            number = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions").fetchone()[0]
            db.execute("INSERT INTO policy_versions (version, at, actor, scope, target, layers, changed) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (number, audit["at"], actor, scope, target,
                                                        json.dumps(layers, sort_keys=True), json.dumps(changed)))
            audit["detail"] = dict(audit["detail"], version=number)
            self._insert_audit(db, audit)
        return number

    def import_policy(self, versions: list[dict[str, Any]], group_members: list[dict[str, Any]]) -> None:
        """Insert policy versions (as policy_versions returns them: numbers, times and
        actors kept) and group members in one transaction (reindex)."""
        with self._transaction() as db:
            self._serialise(db, "policy_versions")
            db.executemany("INSERT INTO policy_versions (version, at, actor, scope, target, layers, changed) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(int(v["version"]), float(v["at"]), str(v["actor"]), str(v["scope"]), str(v["target"]),
                             json.dumps(v["layers"], sort_keys=True), json.dumps(v["changed"])) for v in versions])
            db.executemany("INSERT INTO group_members VALUES (?, ?) ON CONFLICT DO NOTHING",
                           [(str(m["group_name"]), str(m["user"])) for m in group_members])

    def set_group_member(self, group: str, user: str, member: bool, audit: dict[str, Any]) -> bool:
        """Put user in group (or take them out); return False if nothing changed."""
        with self._transaction() as db:
            if member:
                changed = db.execute("INSERT INTO group_members VALUES (?, ?) ON CONFLICT DO NOTHING", (group, user)).rowcount
            else:
                changed = db.execute("DELETE FROM group_members WHERE group_name = ? AND \"user\" = ?",
                                     (group, user)).rowcount
            if changed:
                self._insert_audit(db, audit)
        return bool(changed)

    def group_members(self, user: str | None = None) -> list[dict[str, Any]]:
        sql, params = 'SELECT group_name, "user" FROM group_members', ()
        if user is not None:
            sql, params = sql + ' WHERE "user" = ?', (user,)
        return self._query(sql + ' ORDER BY group_name, "user"', params)

    def remember_groups(self, user: str, groups: list[str], at: float) -> None:
        with self._transaction() as db:
            db.execute('INSERT INTO user_groups VALUES (?, ?, ?) ON CONFLICT ("user") DO UPDATE SET '
                       "groups = excluded.groups, at = excluded.at", (user, json.dumps(sorted(groups)), at))

    def remembered_groups(self, user: str) -> list[str] | None:
        rows = self._query('SELECT groups FROM user_groups WHERE "user" = ?', (user,))
        return json.loads(rows[0]["groups"]) if rows else None

    def policy_contact(self, machine_id: str, applied: int | None, at: float) -> None:
        """Record that a machine asked for its policy, and the version it says it applied."""
        with self._transaction() as db:
            db.execute("UPDATE machines SET policy_contact = ? WHERE id = ?", (at, machine_id))
            if applied is not None:
                db.execute("UPDATE machines SET policy_applied = ?, policy_version = ? WHERE id = ? "
                           "AND policy_version IS DISTINCT FROM ?", (at, applied, machine_id, applied))

    def policy_states(self) -> dict[str, dict[str, Any]]:
        """Return {machine id: {owner, state, policy_version, policy_applied, policy_contact, last_seen}}."""
        return {r.pop("id"): r for r in self._query(
            "SELECT id, owner, state, policy_version, policy_applied, policy_contact, last_seen FROM machines")}

    # a whole fleet at once (benchmarks, large test fleets): every table in one pass

    def load_fleet(self, tables: dict[str, Iterable[tuple]], audit: Iterable[dict[str, Any]] = ()) -> dict[str, int]:
        """Load a fleet into an empty index in one transaction: rows for the tables of
        LOAD_COLUMNS (tuples in that order; any table may be left out) and audit events
        (as event() gives them, oldest first), chained as audit() would chain them. Each
        machine's summary is computed once at the end, not row by row, and the planner's
        statistics refreshed. Return the rows loaded per table. Raise ConflictError
        (writing nothing) if the index holds machines or audit events already."""
        unknown = set(tables) - set(LOAD_COLUMNS)
        if unknown:
            raise ValueError(f"load_fleet cannot load {sorted(unknown)}")
        counts = {}
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM machines UNION ALL SELECT 1 FROM audit LIMIT 1").fetchone():
                raise ConflictError(f"the index {self.where} is not empty", "load a fleet into an empty index")
            with self._summaries_after(db):
                for table, columns in LOAD_COLUMNS.items():
                    if table in tables:
                        counted = _Counted(tables[table])
                        self._insert_rows(db, table, columns, counted)
                        counts[table] = counted.n
            counts["audit"] = self._load_audit(db, audit)
            self._analyze(db)
        return counts

    def _load_audit(self, db: Any, events: Iterable[dict[str, Any]]) -> int:
        """Append events to the (empty) hash chain within db's transaction; return how many."""
        self._serialise(db, "audit")
        rows = [{"id": n, "at": float(e["at"]), "actor": e["actor"], "action": e["action"],
                 "machine_id": e["machine_id"], "source": e["source"],
                 "detail": json.dumps(e["detail"], sort_keys=True)} for n, e in enumerate(events, 1)]
        links = audit_chain.chain(rows)
        self._insert_rows(db, "audit", _AUDIT_COLUMNS,
                          ((r["id"], r["at"], r["actor"], r["action"], r["machine_id"], r["source"], r["detail"],
                            prev, digest) for r, (_, prev, digest) in zip(rows, links)))
        if rows:
            self._audit_appended(db, len(rows))
        return len(rows)

    # archives

    def add_archive(self, machine_id: str, archive: dict[str, Any], audit: dict[str, Any]) -> None:
        """Record one backup report and its audit event in one transaction. A row the
        server already has (the post-session check found the archive first, or the
        report came twice) takes the report's figures and keeps its observed time; once
        a check saw the archive in the repository, its flag is the check's. A report of
        an interrupted or failed backup never overwrites a complete archive's row (one a
        check saw, or one reported as a success): the repository wins."""
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM machines WHERE id = ?", (machine_id,)).fetchone():
                raise NotFoundError(f"no machine {machine_id}")
            db.execute(
                "INSERT INTO archives (machine_id, name, start, \"end\", files, original_size, compressed_size, "
                "deduplicated_size, result, error, observed, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(machine_id, name) DO UPDATE SET start = excluded.start, \"end\" = excluded.\"end\", "
                "files = excluded.files, original_size = excluded.original_size, "
                "compressed_size = excluded.compressed_size, deduplicated_size = excluded.deduplicated_size, "
                "result = excluded.result, error = excluded.error, "
                "observed = COALESCE(archives.observed, excluded.observed), "
                "flag = CASE WHEN archives.archive_id != '' OR archives.flag != '' THEN archives.flag "
                "ELSE excluded.flag END "
                "WHERE excluded.result IN ('success', 'warning') "
                "OR (archives.archive_id = '' AND archives.result NOT IN ('success', 'warning'))",
                (machine_id, archive["name"], archive["start"], archive["end"], archive["files"],
                 archive["original_size"], archive["compressed_size"], archive["deduplicated_size"],
                 archive["result"], archive.get("error", ""), archive.get("observed"), archive.get("flag", "")))
            self._insert_audit(db, audit)

    def archive_observations(self, machine_id: str) -> list[dict[str, Any]]:
        """Return what the server observed of each archive: name, result, observed time
        (None: not observed), flag ('' or why it is not counted), archive_id ('' until a
        post-session check saw it)."""
        return self._query("SELECT name, result, observed, flag, archive_id FROM archives WHERE machine_id = ? "
                           "ORDER BY name", (machine_id,))

    def observe_archives(self, machine_id: str, added: list[dict[str, Any]], seen: list[dict[str, Any]],
                         audit: dict[str, Any] | None) -> None:
        """Record what a post-session check saw, in one transaction: archives the index
        did not have (rows with observed, flag, archive_id), the archive id (and a flag,
        if any) of reported ones, and the audit event. An added row the agent reported as
        interrupted or failed takes borg's figures and result: the archive is complete."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO archives (machine_id, name, start, \"end\", files, original_size, compressed_size, "
                "deduplicated_size, result, error, observed, flag, archive_id) VALUES (:machine_id, :name, "
                ":start, :end, :files, :original_size, :compressed_size, :deduplicated_size, :result, :error, "
                ":observed, :flag, :archive_id) ON CONFLICT(machine_id, name) DO UPDATE SET "
                "archive_id = excluded.archive_id, observed = COALESCE(archives.observed, excluded.observed), "
                "flag = CASE WHEN excluded.flag != '' THEN excluded.flag ELSE archives.flag END, "
                + ", ".join(f"\"{c}\" = CASE WHEN archives.result IN ('success', 'warning') THEN archives.\"{c}\" "
                            f"ELSE excluded.\"{c}\" END" for c in _FIGURES),
                [dict(a, machine_id=machine_id) for a in added])
            db.executemany("UPDATE archives SET archive_id = :archive_id, "
                           "flag = CASE WHEN :flag != '' THEN :flag ELSE flag END "
                           "WHERE machine_id = :machine_id AND name = :name",
                           [dict(s, machine_id=machine_id) for s in seen])
            if audit:
                self._insert_audit(db, audit)

    def archives(self, machine_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT name, start, \"end\", files, original_size, compressed_size, deduplicated_size, result, error, "
            "flag FROM archives WHERE machine_id = ? ORDER BY \"end\"", (machine_id,))

    # audit

    def audit(self, action: str, actor: str, machine_id: str | None = None, source: str = "",
              **detail: Any) -> None:
        """Append one audit event."""
        with self._transaction() as db:
            self._insert_audit(db, event(action, actor, machine_id, source, **detail))

    def _insert_audit(self, db: Any, e: dict[str, Any]) -> None:
        """Append one event to the hash chain, inside the caller's write transaction
        (serialised: two writers never chain onto the same row)."""
        self._serialise(db, "audit")
        last_id, last_hash, sequence = self._audit_head(db)
        row = {"id": audit_chain.next_id(last_id, sequence), "at": float(e["at"]),
               "actor": e["actor"], "action": e["action"], "machine_id": e["machine_id"], "source": e["source"],
               "detail": json.dumps(e["detail"], sort_keys=True),
               "prev_hash": last_hash or audit_chain.GENESIS}
        db.execute("INSERT INTO audit (id, at, actor, action, machine_id, source, detail, prev_hash, hash) "
                   "VALUES (:id, :at, :actor, :action, :machine_id, :source, :detail, :prev_hash, :hash)",
                   dict(row, hash=audit_chain.event_hash(row)))
        self._audit_appended(db, row["id"])

    def audit_events(self, since: float = 0.0, action: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT id, at, actor, action, machine_id, source, detail FROM audit WHERE at >= ?", [since]
        if action:
            sql += " AND action = ?"
            params.append(action)
        rows = self._query(sql + " ORDER BY id", tuple(params))
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def audit_chain_page(self, after_id: int, limit: int = 5000) -> list[dict[str, Any]]:
        """Return up to limit audit rows after after_id, as stored (detail as text)."""
        return self._query("SELECT id, at, actor, action, machine_id, source, detail, prev_hash, hash FROM audit "
                           "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

    def audit_row_with_hash(self, digest: str) -> int | None:
        """Return the id of the audit row whose hash is digest, or None."""
        rows = self._query("SELECT id FROM audit WHERE hash = ? LIMIT 1", (digest,))
        return rows[0]["id"] if rows else None

    # login throttling (issue 11): the rules are logins.py's, the transaction is here

    _THROTTLE_COLUMNS = ("key", "attempts", "blocks", "blocked_until", "last_attempt", "refused", "refused_first",
                         "refused_last", "actor", "source")

    def throttle(self, keys: tuple[str, ...], change: Callable[[list[Record], float], tuple[Any, list[dict]]],
                 forget: Callable[[Record, float], list[dict]] | None = None, now: float | None = None) -> Any:
        """In one write transaction: load the login records of keys (new ones when absent),
        let change(records, now) update them and return (result, audit events), store
        them (an empty record is deleted) and the events; with forget, also let it close
        up to 100 other records quiet since before now (deleted with their events).
        Return the result."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            for key in sorted(keys):
                self._serialise(db, "login:" + key)
            records = [self._login_record(db, key) or Record(key) for key in keys]
            result, events = change(records, now)
            if forget:
                events = events + self._forget_quiet_logins(db, set(keys), forget, now)
            for record in records:
                self._store_login_record(db, record)
            for e in events:
                self._insert_audit(db, e)
        return result

    def login_records(self) -> list[Record]:
        """Return every login record, blocked ones first, then by key."""
        rows = self._query(f"SELECT {', '.join(self._THROTTLE_COLUMNS)} FROM login_throttle "
                           "ORDER BY blocked_until DESC, key")
        return [Record(**row) for row in rows]

    def _login_record(self, db: Any, key: str) -> Record | None:
        row = db.execute(f"SELECT {', '.join(self._THROTTLE_COLUMNS)} FROM login_throttle WHERE key = ?",
                         (key,)).fetchone()
        return Record(**dict(row)) if row else None

    def _store_login_record(self, db: Any, record: Record) -> None:
        if record.empty():
            db.execute("DELETE FROM login_throttle WHERE key = ?", (record.key,))
            return
        values = {c: getattr(record, c) for c in self._THROTTLE_COLUMNS}
        db.execute(f"INSERT INTO login_throttle ({', '.join(values)}, forget_at) "
                   f"VALUES ({', '.join(':' + c for c in values)}, :forget_at) ON CONFLICT (key) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in (*values, "forget_at") if c != "key"),
                   dict(values, forget_at=record.forget_at()))

    def _forget_quiet_logins(self, db: Any, skip: set[str],
                             forget: Callable[[Record, float], list[dict]], now: float) -> list[dict]:
        """Close and delete up to 100 login records quiet since before now; return their events."""
        rows = db.execute(f"SELECT {', '.join(self._THROTTLE_COLUMNS)} FROM login_throttle WHERE forget_at <= ? "
                          "ORDER BY forget_at LIMIT 100", (now,)).fetchall()
        events = []
        for record in (Record(**dict(r)) for r in rows if r["key"] not in skip):
            events += forget(record, now)
            db.execute("DELETE FROM login_throttle WHERE key = ?", (record.key,))
        return events

    # reports: aggregated in SQL, so that a fleet of 100,000 machines reports in seconds

    def fleet(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Return every machine (or one owner's), by owner and name, with its archive
        figures: count, newest successful end, sizes, failures."""
        return [dict(zip(FLEET_COLUMNS, record)) for record in self.fleet_records(owner)]

    def fleet_records(self, owner: str | None = None) -> list[tuple]:
        """Like fleet, as plain tuples in the order of FLEET_COLUMNS."""
        columns = self.fleet_columns(owner)
        return list(zip(*columns.values()))

    def fleet_columns(self, owner: str | None = None) -> dict[str, list]:
        """Return every machine (or one owner's) with its archive figures, column by
        column: {field of FLEET_COLUMNS: [each machine's value]}, machines by owner and
        name. A report of 100,000 machines can afford neither a dict per machine nor the
        join with users (the display names are read apart): rows come a few thousand at
        a time and go straight into the columns."""
        where, params = ("WHERE m.owner = ?", (owner,)) if owner else ("", ())
        columns: list[list] = [[] for _ in FLEET_COLUMNS]
        for rows in self._chunks(f"SELECT {', '.join(FLEET_FIELDS.values())} FROM machines m "
                                 f"LEFT JOIN archive_totals t ON t.machine_id = m.id {where} "
                                 "ORDER BY m.owner, m.name", params):
            for column, values in zip(columns, zip(*rows)):
                column += values
        return dict(zip(FLEET_COLUMNS, columns))

    def display_names(self) -> dict[str, str]:
        """Return the display names the index keeps for its users (those that have one)."""
        return dict(row for rows in self._chunks("SELECT name, display_name FROM users WHERE display_name != ''")
                    for row in rows)

    def storage_growth(self, bucket_seconds: int, owners: list[str]) -> list[dict[str, Any]]:
        """Return the deduplicated bytes the owners' machines added per time bucket, as
        (owner, bucket, added) rows."""
        return self._query(
            f"SELECT m.owner, {self._bucket(_END)} AS bucket, SUM(a.deduplicated_size) AS added "
            "FROM machines m JOIN archives a ON a.machine_id = m.id "
            f"WHERE m.owner IN ({', '.join('?' * len(owners))}) AND a.result IN ('success', 'warning') "
            "GROUP BY 1, 2 ORDER BY 2", (bucket_seconds, *owners))

    def activity(self, since: float, until: float, user: str | None, skip: tuple[str, ...],
                 limit: int) -> list[dict[str, Any]]:
        """Return the newest limit audit events in [since, until), oldest first, with
        their machine's name and owner, leaving out the actions in skip."""
        where, params = self._activity_filter(since, until, user, skip)
        rows = self._query(
            "SELECT a.id, a.at, a.actor, a.action, a.machine_id, a.source, a.detail, "
            "m.name AS machine_name, m.owner AS machine_owner "
            f"FROM audit a LEFT JOIN machines m ON m.id = a.machine_id {where} ORDER BY a.id DESC LIMIT ?",
            (*params, limit))
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows[::-1]

    def activity_counts(self, since: float, until: float, user: str | None,
                        skip: tuple[str, ...]) -> dict[str, int]:
        """Return how many audit events of each action fall in [since, until)."""
        where, params = self._activity_filter(since, until, user, skip)
        rows = self._query("SELECT a.action, COUNT(*) AS n FROM audit a LEFT JOIN machines m "
                           f"ON m.id = a.machine_id {where} GROUP BY a.action", params)
        return {r["action"]: r["n"] for r in rows}

    @staticmethod
    def _activity_filter(since: float, until: float, user: str | None, skip: tuple[str, ...]) -> tuple[str, tuple]:
        where = "WHERE a.at >= ? AND a.at < ?"
        if skip:
            where += f" AND a.action NOT IN ({', '.join('?' * len(skip))})"
        if user:
            return where + " AND (a.actor = ? OR m.owner = ?)", (since, until, *skip, user, user)
        return where, (since, until, *skip)

    # restore grants (issue 11): one-off keys, shared by every process and kept over restarts

    def add_grant(self, grant: dict[str, Any]) -> None:
        """Store a one-off key's grant (replacing one for the same key), dropping expired ones."""
        with self._transaction() as db:
            self._end_lapsed_grants(db, grant["granted"])
            db.execute('INSERT INTO restore_grants (public_key, repository_id, "user", template, granted, '
                       "last_used, expires, idle) VALUES (:public_key, :repository_id, :user, :template, :granted, "
                       ":granted, :expires, :idle) ON CONFLICT (public_key) DO UPDATE SET "
                       + ", ".join(f'"{c}" = excluded."{c}"' for c in ("repository_id", "user", "template", "granted",
                                                                         "last_used", "expires", "idle")), grant)

    def end_lapsed_grants(self, now: float) -> list[dict[str, Any]]:
        """End the grants idle at now (an expired grant stays while a session uses it: age
        never cuts a running restore short); return those a session had used, each
        audited as restore_unreported (a restore that ended without any report)."""
        with self._transaction() as db:
            return self._end_lapsed_grants(db, now)

    def _end_lapsed_grants(self, db: Any, now: float) -> list[dict[str, Any]]:
        lapsed = "FROM restore_grants WHERE last_used + idle <= ?"
        columns = ("repository_id", "user", "template", "granted", "last_used")
        used = [dict(zip(columns, row)) for row in db.execute(
            f"SELECT {', '.join(_quoted(columns))} {lapsed} AND last_used > granted", (now,))]
        for grant in used:
            template = {"template": grant["repository_id"]} if grant["template"] else {}
            self._insert_audit(db, event("restore_unreported", grant["user"],
                                         None if template else grant["repository_id"], "",
                                         granted=grant["granted"], last_used=grant["last_used"], **template))
        db.execute(f"DELETE {lapsed}", (now,))
        return used

    def live_grant(self, public_key: str, repository_id: str, now: float) -> dict[str, Any] | None:
        """Return the grant of public_key for repository_id if it is neither expired nor
        idle too long."""
        rows = self._query("SELECT public_key, repository_id, \"user\", template, granted, last_used, expires, idle "
                           "FROM restore_grants WHERE public_key = ? AND repository_id = ? AND expires > ? "
                           "AND last_used + idle > ?", (public_key, repository_id, now, now))
        return rows[0] if rows else None

    def grant(self, public_key: str, repository_id: str) -> dict[str, Any] | None:
        """Return the grant of public_key for repository_id, live or not (None if ended)."""
        rows = self._query("SELECT public_key, repository_id, \"user\", template, granted, last_used, expires, idle "
                           "FROM restore_grants WHERE public_key = ? AND repository_id = ?",
                           (public_key, repository_id))
        return rows[0] if rows else None

    def touch_grant(self, public_key: str, now: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE restore_grants SET last_used = ? WHERE public_key = ?", (now, public_key))

    def revoke_grants(self, repository_id: str, user: str | None = None, public_key: str | None = None) -> int:
        """End the grants for a repository (only user's, and public_key's, if given);
        return how many."""
        sql, params = "DELETE FROM restore_grants WHERE repository_id = ?", [repository_id]
        if user is not None:
            sql, params = sql + ' AND "user" = ?', params + [user]
        if public_key is not None:
            sql, params = sql + " AND public_key = ?", params + [public_key]
        with self._transaction() as db:
            return db.execute(sql, params).rowcount

    # operations (issue 6): machine lifecycle, reindex, prune, drills, holds, mass-change flags

    _CHANGEABLE = ("name", "name_key", "owner", "state")

    def change_machine(self, machine_id: str, changes: dict[str, str], audit: dict[str, Any]) -> None:
        """Change a machine's name, owner or state, with its audit event, in one transaction;
        raise ConflictError if its owner would have two machines of the same name."""
        if not changes or set(changes) - set(self._CHANGEABLE):
            raise ValueError(f"cannot change {sorted(changes)}")
        columns = ", ".join(f"{c} = ?" for c in changes)
        try:
            with self._transaction() as db:
                db.execute(f"UPDATE machines SET {columns} WHERE id = ?", (*changes.values(), machine_id))
                self._insert_audit(db, audit)
        except self.integrity_errors:
            raise ConflictError("the owner already has a computer of that name", "rename it first") from None

    def import_machine(self, machine: dict[str, Any], name_key: str, archives: list[dict[str, Any]],
                       replaced_keys: list[dict[str, Any]] = ()) -> None:
        """Insert a machine rebuilt from its repository, its archives and the keys an
        adopt replaced (public_key, replaced_at, hostname) in one transaction (reindex);
        raise ConflictError if the owner has that name already."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO machines (id, owner, name, name_key, hostname, public_key, enrolled, last_seen, "
                    "state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (machine["id"], machine["owner"], machine["name"], name_key, machine["hostname"],
                     machine["public_key"], machine["enrolled"], machine["last_seen"], machine["state"]))
                db.executemany(
                    "INSERT INTO archives (machine_id, name, start, \"end\", files, original_size, compressed_size, "
                    "deduplicated_size, result, observed, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(machine["id"], a["name"], a["start"], a["end"], a["files"], a["original_size"],
                      a["compressed_size"], a["deduplicated_size"], a["result"], a.get("observed"),
                      a.get("flag", "")) for a in archives])
                db.executemany(
                    f"INSERT INTO replaced_keys (public_key, machine_id, replaced_at, hostname) "
                    f"VALUES (?, ?, ?, ?) {_REPLACE_KEY}", [(k["public_key"], machine["id"], k["replaced_at"], k["hostname"])
                                            for k in replaced_keys if k["public_key"] != machine["public_key"]])
        except self.integrity_errors:
            raise ConflictError(f"{machine['owner']} already has a computer named {machine['name']!r}") from None

    # the post-session check (issue 11): last good state, pending sessions, freezes

    _HISTORY = ("machine_id, key, txn AS \"transaction\", checked_at, pending_since, pending_until, frozen_at, "
                "frozen_reason, released_at, released_by")
    _CLEAR_PENDING = ("pending_since = CASE WHEN history.pending_until IS NULL OR history.pending_until <= :until "
                      "THEN NULL ELSE history.pending_since END, pending_until = CASE WHEN history.pending_until "
                      "IS NULL OR history.pending_until <= :until THEN NULL ELSE history.pending_until END")

    def history(self, machine_id: str) -> dict[str, Any] | None:
        """Return a machine's repository state: the last good key and transaction, when it
        was checked, the window of sessions not checked yet, and a rollback's freeze."""
        rows = self._query(f"SELECT {self._HISTORY} FROM history WHERE machine_id = ?", (machine_id,))
        return rows[0] if rows else None

    def note_session(self, machine_id: str, started: float, ended: float) -> None:
        """Widen the machine's window of sessions not checked yet to include [started, ended]."""
        with self._transaction() as db:
            db.execute("INSERT INTO history (machine_id, pending_since, pending_until) VALUES (?, ?, ?) "
                       "ON CONFLICT(machine_id) DO UPDATE SET "
                       "pending_since = CASE WHEN history.pending_since < excluded.pending_since "
                       "THEN history.pending_since ELSE excluded.pending_since END, "
                       "pending_until = CASE WHEN history.pending_until > excluded.pending_until "
                       "THEN history.pending_until ELSE excluded.pending_until END",
                       (machine_id, started, ended))

    def session_opened(self, machine_id: str, started: float) -> None:
        """Record, before it writes, that a session of machine_id began at started: a server
        killed during it leaves the machine pending, and the restart checks it."""
        self.note_session(machine_id, started, started)

    def sessions_ended_by(self, now: float) -> None:
        """On a restart, no session of a previous run still runs: every pending window ends by now."""
        with self._transaction() as db:
            db.execute("UPDATE history SET pending_until = CASE WHEN pending_until > :now THEN pending_until ELSE :now END "
                       "WHERE pending_since IS NOT NULL", {"now": now})

    def pending_checks(self) -> list[str]:
        """Return the machines with sessions not checked yet, longest waiting first."""
        return [r["machine_id"] for r in self._query(
            "SELECT machine_id FROM history WHERE pending_since IS NOT NULL ORDER BY pending_until")]

    def record_good_check(self, machine_id: str, key: str, transaction: int | None, at: float, until: float) -> None:
        """Record a good check: the key and transaction to roll back to, and the
        sessions up to until as checked."""
        with self._transaction() as db:
            db.execute("INSERT INTO history (machine_id, key, txn, checked_at) VALUES (:machine_id, :key, :txn, :at) "
                       "ON CONFLICT(machine_id) DO UPDATE SET key = excluded.key, txn = excluded.txn, "
                       f"checked_at = excluded.checked_at, {self._CLEAR_PENDING}",
                       {"machine_id": machine_id, "key": key, "txn": transaction, "at": at, "until": until})

    def freeze_history(self, machine_id: str, reason: str, gone: list[str], at: float, until: float,
                       audit: dict[str, Any]) -> None:
        """Freeze a machine whose history was rolled back (or could not be), flag the
        archives no longer in its repository, and audit it, in one transaction."""
        with self._transaction() as db:
            db.execute("INSERT INTO history (machine_id) VALUES (?) ON CONFLICT DO NOTHING", (machine_id,))
            db.execute("UPDATE history SET frozen_at = :at, frozen_reason = :reason, released_at = NULL, "
                       f"released_by = '', {self._CLEAR_PENDING} WHERE machine_id = :machine_id",
                       {"machine_id": machine_id, "at": at, "reason": reason, "until": until})
            db.executemany("UPDATE archives SET flag = 'not in the repository after a history rollback' "
                           "WHERE machine_id = ? AND name = ? AND flag = ''", [(machine_id, n) for n in gone])
            self._insert_audit(db, audit)

    def release_history(self, machine_id: str, actor: str, audit: dict[str, Any]) -> bool:
        """Lift a history rollback's freeze with its audit event; return False if there was none."""
        with self._transaction() as db:
            released = db.execute("UPDATE history SET released_at = ?, released_by = ? WHERE machine_id = ? "
                                  "AND frozen_at IS NOT NULL AND released_at IS NULL",
                                  (audit["at"], actor, machine_id)).rowcount
            if released:
                self._insert_audit(db, audit)
        return bool(released)

    def frozen_by_history(self, user: str | None) -> list[dict[str, Any]]:
        """Return the machines (of user's, or all) frozen by a history rollback, oldest
        first: machine_id, owner, name, frozen_at, reason."""
        where, params = ("AND m.owner = ?", (user,)) if user else ("", ())
        return self._query("SELECT h.machine_id, m.owner, m.name, h.frozen_at, h.frozen_reason AS reason "
                           "FROM history h JOIN machines m ON m.id = h.machine_id WHERE h.frozen_at IS NOT NULL "
                           f"AND h.released_at IS NULL {where} ORDER BY h.frozen_at", params)

    def mark_pruning(self, machine_id: str, names: list[str]) -> None:
        """Mark archives the server is about to delete (archive_id PRUNING), so that a
        post-session check in between takes their absence for the prune's, not an attack's."""
        with self._transaction() as db:
            db.executemany("UPDATE archives SET archive_id = ? WHERE machine_id = ? AND name = ?",
                           [(PRUNING, machine_id, n) for n in names])

    def remove_archives(self, machine_id: str, names: list[str], audit: dict[str, Any]) -> None:
        """Forget archives a prune deleted, with its audit event, in one transaction."""
        with self._transaction() as db:
            db.executemany("DELETE FROM archives WHERE machine_id = ? AND name = ?", [(machine_id, n) for n in names])
            self._insert_audit(db, audit)

    def add_drill(self, drill: dict[str, Any], audit: dict[str, Any]) -> None:
        """Record one drill's result and its audit event in one transaction."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO drills (machine_id, started, finished, archive, result, failures, files, bytes, "
                "check_seconds, extract_seconds, throughput, rpo_seconds, hashed_files) "
                "VALUES (:machine_id, :started, :finished, :archive, :result, :failures, :files, :bytes, "
                ":check_seconds, :extract_seconds, :throughput, :rpo_seconds, :hashed_files)",
                dict(drill, failures=json.dumps(drill["failures"])))
            self._insert_audit(db, audit)

    def drills(self, machine_id: str | None = None, latest_only: bool = False) -> list[dict[str, Any]]:
        """Return drills, newest first (of one machine, or all; latest_only: each machine's newest)."""
        where, params = ("WHERE d.machine_id = ?", (machine_id,)) if machine_id else ("WHERE 1 = 1", ())
        if latest_only:
            where += " AND d.id = (SELECT MAX(id) FROM drills WHERE machine_id = d.machine_id)"
        rows = self._query(
            "SELECT id, machine_id, started, finished, archive, result, failures, files, bytes, check_seconds, "
            f"extract_seconds, throughput, rpo_seconds, hashed_files FROM drills d {where} ORDER BY id DESC", params)
        for row in rows:
            row["failures"] = json.loads(row["failures"])
        return rows

    def drill_outcomes(self, user: str | None, limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return, over each machine's newest drill (of user's machines, or all): how many
        per result with the newest finish (result, machines, newest), and the newest limit
        of those that did not pass, with their machine's owner and name."""
        latest = "d.id IN (SELECT MAX(id) FROM drills GROUP BY machine_id)"
        where, params = (f"WHERE {latest} AND m.owner = ?", (user,)) if user else (f"WHERE {latest}", ())
        counts = self._query("SELECT d.result, COUNT(*) AS machines, MAX(d.finished) AS newest FROM drills d "
                             f"JOIN machines m ON m.id = d.machine_id {where} GROUP BY d.result ORDER BY d.result",
                             params)
        failed = self._query("SELECT d.machine_id, m.owner, m.name, d.finished, d.archive, d.failures FROM drills d "
                             f"JOIN machines m ON m.id = d.machine_id {where} AND d.result != 'passed' "
                             "ORDER BY d.finished DESC LIMIT ?", (*params, limit))
        for row in failed:
            row["failures"] = json.loads(row["failures"])
        return counts, failed

    def frozen_by_mass_change(self, user: str | None) -> list[dict[str, Any]]:
        """Return the unreleased mass-change flags (of user's machines, or all), oldest
        first, with their machine's owner and name."""
        where, params = ("AND m.owner = ?", (user,)) if user else ("", ())
        return self._query("SELECT f.machine_id, m.owner, m.name, f.archive, f.share, f.baseline, f.flagged_at "
                           "FROM mass_change f JOIN machines m ON m.id = f.machine_id "
                           f"WHERE f.released_at IS NULL {where} ORDER BY f.flagged_at", params)

    def add_hold(self, machine_id: str, archive: str, actor: str, reason: str, audit: dict[str, Any]) -> bool:
        """Hold an archive ('*': all of the machine's) with its audit event; return False
        if it was held already."""
        with self._transaction() as db:
            added = db.execute("INSERT INTO holds (machine_id, archive, added, added_by, reason) "
                               "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                               (machine_id, archive, audit["at"], actor, reason)).rowcount
            if added:
                self._insert_audit(db, audit)
        return bool(added)

    def remove_holds(self, machine_id: str, archive: str | None, audit: dict[str, Any]) -> int:
        """Lift one hold (archive None: all of the machine's) with its audit event; return how many."""
        sql, params = "DELETE FROM holds WHERE machine_id = ?", (machine_id,)
        if archive is not None:
            sql, params = sql + " AND archive = ?", (machine_id, archive)
        with self._transaction() as db:
            removed = db.execute(sql, params).rowcount
            if removed:
                self._insert_audit(db, audit)
        return removed

    def holds(self, machine_id: str | None = None) -> list[dict[str, Any]]:
        """Return legal holds (of one machine, or all): machine_id, archive ('*': all), added, added_by, reason."""
        where, params = ("WHERE machine_id = ?", (machine_id,)) if machine_id else ("", ())
        return self._query(f"SELECT machine_id, archive, added, added_by, reason FROM holds {where} "
                           "ORDER BY machine_id, archive", params)

    def flag_mass_change(self, flag: dict[str, Any], audit: dict[str, Any]) -> None:
        """Flag a machine whose newest archive changed too much (freezing its pruning),
        replacing any earlier flag, with its audit event."""
        with self._transaction() as db:
            db.execute("INSERT INTO mass_change (machine_id, archive, share, baseline, flagged_at, "
                       "released_at, released_by) VALUES (:machine_id, :archive, :share, :baseline, :flagged_at, "
                       ":released_at, :released_by) ON CONFLICT (machine_id) DO UPDATE SET "
                       + ", ".join(f"{c} = excluded.{c}" for c in ("archive", "share", "baseline", "flagged_at",
                                                                    "released_at", "released_by")), dict({"released_at": None, "released_by": ""}, **flag))
            self._insert_audit(db, audit)

    def release_mass_change(self, machine_id: str, actor: str, audit: dict[str, Any]) -> bool:
        """Release a machine's mass-change freeze with its audit event; return False if it had none."""
        with self._transaction() as db:
            released = db.execute("UPDATE mass_change SET released_at = ?, released_by = ? "
                                  "WHERE machine_id = ? AND released_at IS NULL",
                                  (audit["at"], actor, machine_id)).rowcount
            if released:
                self._insert_audit(db, audit)
        return bool(released)

    def mass_change_flags(self, machine_id: str | None = None, include_released: bool = False) -> list[dict[str, Any]]:
        """Return mass-change flags: machine_id, archive, share (new data / original size of
        that archive), baseline (the machine's usual share), flagged_at, released_at,
        released_by, frozen (True while not released: its pruning is frozen)."""
        clauses, params = [], []
        if machine_id:
            clauses, params = ["machine_id = ?"], [machine_id]
        if not include_released:
            clauses.append("released_at IS NULL")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._query("SELECT machine_id, archive, share, baseline, flagged_at, released_at, released_by "
                           f"FROM mass_change {where} ORDER BY flagged_at", tuple(params))
        for row in rows:
            row["frozen"] = row["released_at"] is None
        return rows


class _Counted:
    """Rows passed through, counted."""

    def __init__(self, rows: Iterable[tuple]) -> None:
        self._rows, self.n = iter(rows), 0

    def __iter__(self) -> "_Counted":
        return self

    def __next__(self) -> tuple:
        row = next(self._rows)
        self.n += 1
        return row


def _quoted(columns: tuple[str, ...]) -> list[str]:
    return [f'"{c}"' for c in columns]


def admin_actor() -> str:
    """Return who runs an admin command on the server host, for audit events."""
    return "admin:" + (os.environ.get("SUDO_USER") or getpass.getuser())


def _policy_row(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row, layers=json.loads(row["layers"]), changed=json.loads(row["changed"]))


def event(action: str, actor: str, machine_id: str | None = None, source: str = "", **detail: Any) -> dict:
    """Return an audit event record, stamped now."""
    return {"at": time.time(), "actor": actor, "action": action, "machine_id": machine_id,
            "source": source, "detail": detail}
