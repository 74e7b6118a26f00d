"""The index: migrations, atomic machine rows, idempotent archive reports."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from homesync.errors import ConflictError, IndexDamagedError, NotFoundError
from homesync_server.index import MIGRATIONS, Index, event


def _machine(id_: str, name: str = "Joe's Thinkpad") -> dict:
    return {"id": id_, "owner": "joe", "name": name, "hostname": "h", "public_key": "ssh-ed25519 A",
            "enrolled": 1.0}


def test_migrations_run_once_and_reopen(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    assert index.schema_version() == max(MIGRATIONS)
    index.close()
    assert Index(tmp_path / "i.sqlite").schema_version() == max(MIGRATIONS)


def test_a_duplicate_name_leaves_neither_row_nor_audit_event(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_user("joe")
    index.add_machine(_machine("0" * 16), "joe's thinkpad", event("enroll", "joe", "0" * 16))
    with pytest.raises(ConflictError):
        index.add_machine(_machine("1" * 16, "JOE'S THINKPAD"), "joe's thinkpad", event("enroll", "joe", "1" * 16))
    assert [m["id"] for m in index.machines()] == ["0" * 16]
    assert [e["machine_id"] for e in index.audit_events(action="enroll")] == ["0" * 16]


def test_archive_reports_are_idempotent_and_need_a_machine(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_user("joe")
    index.add_machine(_machine("0" * 16), "k", event("enroll", "joe"))
    archive = {"name": "a", "start": 1.0, "end": 2.0, "files": 3, "original_size": 10, "compressed_size": 9,
               "deduplicated_size": 5, "result": "success"}
    index.add_archive("0" * 16, archive, event("backup", "joe"))
    index.add_archive("0" * 16, archive, event("backup", "joe"))
    assert len(index.archives("0" * 16)) == 1
    assert index.machines("joe")[0]["last_backup"] == 2.0
    with pytest.raises(NotFoundError):
        index.add_archive("9" * 16, archive, event("backup", "joe"))
    assert len(index.audit_events(action="backup")) == 2


def test_a_migration_numbered_below_the_highest_applied_still_runs(tmp_path, monkeypatch):
    # branches merged: this index reached the highest number without 4, which arrives later
    index = Index(tmp_path / "i.sqlite")
    index.close()
    db = sqlite3.connect(tmp_path / "i.sqlite")
    with db:
        db.execute("DELETE FROM schema_migrations WHERE number = 4")
    db.close()
    monkeypatch.setitem(MIGRATIONS, 4, "CREATE TABLE merged_later (x INTEGER)")
    index = Index(tmp_path / "i.sqlite")
    assert index.schema_version() == max(MIGRATIONS)
    assert index._query("SELECT COUNT(*) AS n FROM merged_later") == [{"n": 0}]
    index.close()
    Index(tmp_path / "i.sqlite").close()  # and it runs once


def test_a_report_arriving_after_the_check_merges_and_keeps_what_the_server_observed(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_user("joe")
    index.add_machine(_machine("a" * 16), "joe's thinkpad", event("enroll", "joe"))
    found = {"name": "n", "start": 10.0, "end": 10.0, "files": 3, "original_size": 30, "compressed_size": 20,
             "deduplicated_size": 10, "result": "success", "error": "", "observed": 12.0, "flag": "",
             "archive_id": "ab"}
    index.observe_archives("a" * 16, [found], [], event("archives_observed", "server"))
    report = dict(found, observed=99.0, flag="claims the future", files=4, result="warning")
    del report["archive_id"]
    index.add_archive("a" * 16, report, event("backup", "joe"))
    (row,) = index.archive_observations("a" * 16)
    assert (row["observed"], row["flag"], row["archive_id"], row["result"]) == (12.0, "", "ab", "warning")
    assert [a["files"] for a in index.archives("a" * 16)] == [4]


def test_a_used_grant_that_lapses_without_a_report_is_audited_and_an_unused_one_is_not(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_user("joe")
    index.add_machine(_machine("0" * 16), "joe's thinkpad", event("enroll", "joe", "0" * 16))
    for key in ("ssh-ed25519 USED", "ssh-ed25519 UNUSED"):
        index.add_grant({"public_key": key, "repository_id": "0" * 16, "user": "joe", "template": 0,
                         "granted": 100.0, "expires": 100.0 + 86400, "idle": 1800})
    index.touch_grant("ssh-ed25519 USED", 200.0)
    assert index.end_lapsed_grants(1000.0) == []  # not idle yet: nothing ends
    (lapsed,) = index.end_lapsed_grants(200.0 + 1800)
    assert (lapsed["user"], lapsed["repository_id"], lapsed["last_used"]) == ("joe", "0" * 16, 200.0)
    assert index.grant("ssh-ed25519 USED", "0" * 16) is None and index.grant("ssh-ed25519 UNUSED", "0" * 16) is None
    rows = index._query("SELECT actor, machine_id FROM audit WHERE action = 'restore_unreported'")
    assert [(r["actor"], r["machine_id"]) for r in rows] == [("joe", "0" * 16)]


def _filled(path) -> None:
    index = Index(path)
    index.record_user("joe")
    for n in range(100):
        index.add_machine(_machine(f"{n:016x}", f"m{n}"), f"m{n}", event("enroll", "joe", f"{n:016x}"))
    index.close()


def test_an_index_whose_header_was_overwritten_is_named_as_damaged(tmp_path):
    path = tmp_path / "i.sqlite"
    _filled(path)
    with open(path, "r+b") as f:
        f.write(b"\xa5" * 100)
    with pytest.raises(IndexDamagedError) as raised:
        Index(path)
    assert str(path) in raised.value.line() and "homesync-server reindex --force" in raised.value.line()
    assert raised.value.exit_code == 19


def test_an_index_with_pages_overwritten_fails_its_check_and_its_queries_as_damaged(tmp_path):
    path = tmp_path / "i.sqlite"
    _filled(path)
    with open(path, "r+b") as f:
        f.seek(4096 * 2)
        f.write(b"\xa5" * 4096 * 3)
    index = Index(path)  # the header is intact: opening works, reading the pages does not
    with pytest.raises(IndexDamagedError, match="is damaged"):
        index.check_integrity()
    with pytest.raises(IndexDamagedError):
        index.machines()


def test_other_sqlite_errors_are_not_called_damage(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        index._query("SELECT nothing FROM nowhere")
    index.check_integrity()


def _complete(name: str = "n") -> dict:
    return {"name": name, "start": 10.0, "end": 11.0, "files": 3, "original_size": 30, "compressed_size": 20,
            "deduplicated_size": 10, "result": "success", "error": "", "observed": 12.0, "flag": "",
            "archive_id": "ab"}


def _interrupted(name: str = "n") -> dict:
    return {"name": name, "start": 10.0, "end": 11.5, "files": 0, "original_size": 0, "compressed_size": 0,
            "deduplicated_size": 0, "result": "interrupted", "error": "borg create was stopped by signal 9"}


def test_a_late_failure_report_never_overwrites_a_complete_archive(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_user("joe")
    index.add_machine(_machine("a" * 16), "joe's thinkpad", event("enroll", "joe"))
    index.observe_archives("a" * 16, [_complete()], [], event("archives_observed", "server"))
    index.add_archive("a" * 16, _interrupted(), event("backup", "joe"))
    (row,) = index.archives("a" * 16)
    assert (row["result"], row["files"], row["error"]) == ("success", 3, "")


def test_the_check_corrects_an_earlier_failure_report_of_a_complete_archive(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_user("joe")
    index.add_machine(_machine("a" * 16), "joe's thinkpad", event("enroll", "joe"))
    index.add_archive("a" * 16, _interrupted(), event("backup", "joe"))
    index.observe_archives("a" * 16, [_complete()], [], event("archives_observed", "server"))
    (row,) = index.archives("a" * 16)
    assert (row["result"], row["files"], row["error"]) == ("success", 3, "")
    assert index.archive_observations("a" * 16)[0]["archive_id"] == "ab"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small file system")
def test_a_full_disk_under_the_index_is_named(tmp_path):
    from homesync.errors import DiskFullError
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        index = Index(disk / "i.sqlite")
        index.record_user("joe")
        index.add_machine(_machine("a" * 16), "joe's thinkpad", event("enroll", "joe"))
        filler = open(disk / "filler", "wb", buffering=0)
        try:
            while True:
                filler.write(b"x" * 65536)
        except OSError:
            pass
        with pytest.raises(DiskFullError, match="disk is full"):
            for i in range(2000):
                index.add_archive("a" * 16, dict(_complete(f"n{i}"), error="e" * 900), event("backup", "joe"))
        index.close()
        filler.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
