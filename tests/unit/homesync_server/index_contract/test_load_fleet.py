"""Contract: a whole fleet loaded at once (load_fleet, what the report bench fills both
engines with) reads back as the same fleet per-row writes would give, its audit events
one sound chain, and the index goes on keeping each machine's summary afterwards."""

from __future__ import annotations

import pytest

from homesync.errors import ConflictError
from homesync_server.actions.report import verify_chain
from homesync_server.index import event

from .helpers import archive

A, B = "a" * 16, "b" * 16


def _fleet() -> dict[str, list[tuple]]:
    return {
        "users": [("joe", "Joe", 1.0)],
        "machines": [(machine_id, "joe", name, name.lower(), "host", "ssh-ed25519 AAAA", 10.0, 500.0, "active",
                      "idle", "", "0.1.0", 2, 400.0) for machine_id, name in ((A, "Laptop"), (B, "Desk"))],
        "archives": [(A, "a-1", 90.0, 100.0, 5, 1000, 500, 300, "success", ""),
                     (A, "a-2", 190.0, 200.0, 6, 2000, 900, 40, "warning", "1 file vanished"),
                     (A, "a-3", 290.0, 300.0, 0, 0, 0, 0, "failed", "borg failed"),
                     (B, "b-1", 50.0, 60.0, 1, 70, 60, 50, "interrupted", "stopped")],
        "drills": [(A, 210.0, 250.0, "a-2", "passed", "[]", 6, 2000, 1.0, 2.0, 1000.0, 10.0, 3)],
        "mass_change": [(B, "b-1", 0.9, 0.02, 70.0)],
    }


def _events() -> list[dict]:
    return [dict(event("enroll", "joe", A, "10.0.0.1:5", name="Laptop"), at=10.0),
            dict(event("enroll", "joe", B, "10.0.0.1:6", name="Desk"), at=11.0),
            dict(event("restore", "joe", A, "10.0.0.2:7", archive="a-2"), at=220.0)]


def test_a_loaded_fleet_reads_back_with_its_summaries_and_one_audit_chain(index):
    counts = index.load_fleet(_fleet(), _events())
    assert counts == {"users": 1, "machines": 2, "archives": 4, "drills": 1, "mass_change": 1, "audit": 3}
    fleet = {m["id"]: m for m in index.fleet()}
    assert (fleet[A]["archives"], fleet[A]["last_backup"], fleet[A]["original_size"], fleet[A]["deduplicated_size"],
            fleet[A]["failed"]) == (2, 200.0, 2000, 340, 1)
    assert (fleet[B]["archives"], fleet[B]["last_backup"], fleet[B]["failed"]) == (0, None, 0)
    assert (fleet[A]["policy_version"], fleet[A]["policy_contact"]) == (2, 400.0)
    assert [a["name"] for a in index.archives(A)] == ["a-1", "a-2", "a-3"]
    assert [d["archive"] for d in index.drills(A)] == ["a-2"]
    assert [f["machine_id"] for f in index.mass_change_flags()] == [B]
    assert [e["action"] for e in index.audit_events()] == ["enroll", "enroll", "restore"]
    assert verify_chain(index).intact and index.audit_sequence() == 3
    # afterwards the index keeps summaries and the chain as usual
    index.add_archive(B, archive("b-2", 400.0, original_size=77), event("backup", "joe", B))
    again = {m["id"]: m for m in index.fleet()}
    assert (again[B]["archives"], again[B]["last_backup"], again[B]["original_size"]) == (1, 400.0, 77)
    assert verify_chain(index).intact and index.audit_sequence() == 4


def test_a_fleet_loads_only_into_an_empty_index(index):
    index.load_fleet({"users": [("joe", "Joe", 1.0)], "machines": _fleet()["machines"][:1]})
    with pytest.raises(ConflictError):
        index.load_fleet({"users": [("ann", "Ann", 1.0)]})
    assert [u["name"] for u in index.users()] == ["joe"]
