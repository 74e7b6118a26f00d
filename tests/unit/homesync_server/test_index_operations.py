"""The index's operations tables (migration 3): machine changes, reindex imports, pruned
archives, drills, legal holds and mass-change flags, each with its audit event."""

from __future__ import annotations

import pytest

from homesync.errors import ConflictError
from homesync_server.index import event
from homesync_server.index_store import open_url

A, B = "a" * 16, "b" * 16


@pytest.fixture
def index(tmp_path):
    index = open_url(f'sqlite://{tmp_path / "i.sqlite"}')
    index.record_user("joe")
    for machine_id, name in ((A, "Laptop"), (B, "Desk")):
        index.add_machine({"id": machine_id, "owner": "joe", "name": name, "hostname": "h",
                           "public_key": "ssh-ed25519 K", "enrolled": 1.0}, name.lower(), event("enroll", "joe"))
    yield index
    index.close()


def _archive(name: str, end: float) -> dict:
    return {"name": name, "start": end - 1, "end": end, "files": 1, "original_size": 10, "compressed_size": 9,
            "deduplicated_size": 5, "result": "success"}


def test_a_rename_onto_a_taken_name_changes_nothing(index):
    with pytest.raises(ConflictError):
        index.change_machine(A, {"name": "Desk", "name_key": "desk"}, event("machine_rename", "admin:x", A))
    assert index.machine(A)["name"] == "Laptop"
    assert index.audit_events(action="machine_rename") == []
    index.change_machine(A, {"state": "retired"}, event("machine_retire", "admin:x", A))
    assert index.machine(A)["state"] == "retired"
    with pytest.raises(ValueError):
        index.change_machine(A, {"public_key": "x"}, event("x", "y"))


def test_import_and_remove_archives(index, tmp_path):
    fresh = open_url(f'sqlite://{tmp_path / "j.sqlite"}')
    fresh.record_user("ann")
    fresh.import_machine({"id": A, "owner": "ann", "name": "L", "hostname": "h", "public_key": "k", "enrolled": 1.0,
                          "last_seen": 9.0, "state": "retired"}, "l", [_archive("x", 5.0), _archive("y", 9.0)])
    assert fresh.machine(A)["state"] == "retired" and fresh.machines()[0]["archives"] == 2
    fresh.remove_archives(A, ["x"], event("prune", "admin:x", A, deleted=["x"]))
    assert [a["name"] for a in fresh.archives(A)] == ["y"]
    assert fresh.audit_events(action="prune")[0]["detail"]["deleted"] == ["x"]
    fresh.close()


def test_holds_are_added_once_and_lifted_one_or_all(index):
    assert index.add_hold(A, "x", "admin:x", "case 7", event("hold_add", "admin:x", A)) is True
    assert index.add_hold(A, "x", "admin:x", "", event("hold_add", "admin:x", A)) is False
    index.add_hold(A, "*", "admin:x", "", event("hold_add", "admin:x", A))
    assert [(h["archive"], h["reason"]) for h in index.holds(A)] == [("*", ""), ("x", "case 7")]
    assert len(index.audit_events(action="hold_add")) == 2
    assert index.remove_holds(A, "nope", event("hold_remove", "admin:x", A)) == 0
    assert index.remove_holds(A, None, event("hold_remove", "admin:x", A)) == 2
    assert index.holds() == [] and len(index.audit_events(action="hold_remove")) == 1


def test_a_mass_change_flag_freezes_until_released(index):
    flag = {"machine_id": A, "archive": "x", "share": 0.9, "baseline": 0.01, "flagged_at": 5.0}
    index.flag_mass_change(flag, event("mass_change", "admin:x", A))
    assert [(f["machine_id"], f["frozen"]) for f in index.mass_change_flags()] == [(A, True)]
    assert index.release_mass_change(A, "admin:y", event("mass_change_release", "admin:y", A)) is True
    assert index.release_mass_change(A, "admin:y", event("mass_change_release", "admin:y", A)) is False
    assert index.mass_change_flags() == []
    released = index.mass_change_flags(A, include_released=True)[0]
    assert released["released_by"] == "admin:y" and released["frozen"] is False


def test_drills_newest_first_and_latest_per_machine(index):
    for machine_id, started, result in ((A, 1.0, "failed"), (B, 2.0, "passed"), (A, 3.0, "passed")):
        index.add_drill({"machine_id": machine_id, "started": started, "finished": started + 1, "archive": "x",
                         "result": result, "failures": [{"stage": "check", "message": "m"}] if result == "failed"
                         else [], "files": 1, "bytes": 2, "check_seconds": 0.1, "extract_seconds": 0.2,
                         "throughput": 10.0, "rpo_seconds": 60.0, "hashed_files": 1},
                        event("drill", "admin:x", machine_id, result=result))
    assert [d["started"] for d in index.drills()] == [3.0, 2.0, 1.0]
    assert [(d["machine_id"], d["result"]) for d in index.drills(latest_only=True)] == [(A, "passed"), (B, "passed")]
    assert index.drills(A)[1]["failures"] == [{"stage": "check", "message": "m"}]
