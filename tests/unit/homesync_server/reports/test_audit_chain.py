"""The audit log's hash chain on a real index file: intact passes; an edited row, a
deleted row (in the middle, at the start, at the end), reordered rows and a rewritten
hash are each caught and named, with the SQLite file edited directly as an attacker
would (dropping the append-only guards first). Existing events are chained by the
migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from homesync_server import audit
from homesync_server.actions.report import verify_audit
from homesync_server.config import Layout
from homesync_server.index import MIGRATIONS
from homesync_server.index_store import open_url


def _index_with_events(tmp_path: Path, count: int = 6) -> Layout:
    layout = Layout(tmp_path)
    index = open_url(f"sqlite://{layout.index}")
    for n in range(count):
        index.audit("login_failed" if n % 2 else "restore", f"user{n}", source=f"10.0.0.{n}:22",
                    reason="wrong password", n=n)
    index.close()
    return layout


def _tamper(layout: Layout, *statements: str) -> None:
    # Tampering edits the file directly, as an attacker with the file would: that is what
    # `audit verify` must catch, and the index's interface cannot do it.
    db = sqlite3.connect(layout.index)
    db.execute("DROP TRIGGER audit_append_only_update")
    db.execute("DROP TRIGGER audit_append_only_delete")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def test_an_intact_chain_passes_and_names_its_head(tmp_path):
    verdict = verify_audit(_index_with_events(tmp_path))
    assert verdict.intact and verdict.checked == 6 and verdict.head_id == 6
    assert len(verdict.head_hash) == 64


def test_an_empty_log_is_intact(tmp_path):
    open_url(f'sqlite://{tmp_path / "index.sqlite"}').close()
    assert verify_audit(Layout(tmp_path)).intact


def test_an_edited_row_is_caught(tmp_path):
    layout = _index_with_events(tmp_path)
    _tamper(layout, "UPDATE audit SET detail = '{\"n\": 99}' WHERE id = 4")
    verdict = verify_audit(layout)
    assert (verdict.broken.row_id, verdict.broken.problem) == (4, "edited")
    assert verdict.checked == 3


def test_an_edited_and_rehashed_row_is_caught_at_the_next_link(tmp_path):
    layout = _index_with_events(tmp_path)
    db = sqlite3.connect(layout.index)  # the stored row as an attacker reads it, to rehash it
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM audit WHERE id = 3").fetchone())
    db.close()
    row["actor"] = "somebody-else"
    _tamper(layout, f"UPDATE audit SET actor = 'somebody-else', hash = '{audit.event_hash(row)}' WHERE id = 3")
    verdict = verify_audit(layout)
    assert (verdict.broken.row_id, verdict.broken.problem) == (4, "edited")
    assert "row 3" in verdict.broken.message


@pytest.mark.parametrize("deleted, named", [(3, 4), (1, 2)])
def test_a_deleted_row_is_caught(tmp_path, deleted, named):
    layout = _index_with_events(tmp_path)
    _tamper(layout, f"DELETE FROM audit WHERE id = {deleted}")
    verdict = verify_audit(layout)
    assert (verdict.broken.row_id, verdict.broken.problem) == (named, "deleted")
    assert f"row {deleted} deleted" in verdict.broken.message


def test_deleting_the_newest_rows_is_caught_and_so_are_rows_appended_after(tmp_path):
    layout = _index_with_events(tmp_path)
    _tamper(layout, "DELETE FROM audit WHERE id >= 5")
    verdict = verify_audit(layout)
    assert verdict.broken.problem == "deleted" and "rows 5-6" in verdict.broken.message
    index = open_url(f"sqlite://{layout.index}")
    index.audit("restore", "joe")  # links to row 4, but takes id 7: the gap stays visible
    index.close()
    verdict = verify_audit(layout)
    assert (verdict.broken.row_id, verdict.broken.problem) == (7, "deleted")


def test_reordered_rows_are_caught(tmp_path):
    layout = _index_with_events(tmp_path)
    _tamper(layout, "UPDATE audit SET id = -3 WHERE id = 3", "UPDATE audit SET id = 3 WHERE id = 4",
            "UPDATE audit SET id = 4 WHERE id = -3")
    verdict = verify_audit(layout)
    assert (verdict.broken.row_id, verdict.broken.problem) == (3, "reordered")


def test_the_index_refuses_to_change_or_delete_chained_events(tmp_path):
    layout = _index_with_events(tmp_path)
    db = sqlite3.connect(layout.index)  # SQL past the index: its triggers must refuse it
    for statement in ("UPDATE audit SET actor = 'x' WHERE id = 1", "DELETE FROM audit WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    db.close()


def test_the_migration_chains_events_written_before_the_chain(tmp_path):
    path = tmp_path / "index.sqlite"
    db = sqlite3.connect(path)  # an index file as the first schema wrote it, before the chain existed
    db.executescript(MIGRATIONS[1] + "PRAGMA user_version = 1;")
    db.executemany("INSERT INTO audit (at, actor, action, machine_id, source, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   [(1, "joe", "enroll", "0" * 16, "", '{"name": "a"}'), (2.5, "ann", "restore", None, "x", "{}")])
    db.commit()
    db.close()
    index = open_url(f"sqlite://{path}")
    index.audit("restore", "joe")
    index.close()
    verdict = verify_audit(Layout(tmp_path))
    assert verdict.intact and verdict.checked == 3


def test_verify_refuses_a_directory_without_an_index(tmp_path):
    from homesync.errors import ConfigError
    with pytest.raises(ConfigError):
        verify_audit(Layout(tmp_path))


def test_the_hash_covers_every_field():
    row = {"id": 1, "at": 1.5, "actor": "joe", "action": "restore", "machine_id": None, "source": "s",
           "detail": "{}", "prev_hash": audit.GENESIS}
    digest = audit.event_hash(row)
    for field, other in (("id", 2), ("at", 1.25), ("actor", "ann"), ("action", "enroll"), ("machine_id", "m"),
                         ("source", "t"), ("detail", '{"a": 1}'), ("prev_hash", "1" * 64)):
        assert audit.event_hash(dict(row, **{field: other})) != digest, field
    assert audit.event_hash(dict(row, at=1)) == audit.event_hash(dict(row, at=1.0))
