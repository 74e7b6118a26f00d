"""The index: migrations, atomic machine rows, idempotent archive reports."""

from __future__ import annotations

import pytest

from homesync.errors import ConflictError, NotFoundError
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
