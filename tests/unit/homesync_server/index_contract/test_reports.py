"""Contract: the fleet read for reports, in the same order on every engine."""

from __future__ import annotations

from homesync_server.index import FLEET_COLUMNS, event

from .helpers import archive, enrolled, machine


def test_the_fleet_comes_by_owner_and_name_in_byte_order(index):
    for n, (owner, name) in enumerate([("joe", "b"), ("Zed", "a"), ("joe", "B"), ("ann", "é"), ("ann", "z")]):
        index.record_user(owner)
        index.add_machine(machine(f"{n:016x}", name, owner), f"{name} {n}", event("enroll", owner))
    fleet = index.fleet()
    assert [(m["owner"], m["name"]) for m in fleet] == [("Zed", "a"), ("ann", "z"), ("ann", "é"), ("joe", "B"),
                                                        ("joe", "b")]
    columns = index.fleet_columns("ann")
    assert tuple(columns) == FLEET_COLUMNS and columns["name"] == ["z", "é"]
    assert index.fleet_records("joe") == [tuple(m.values()) for m in fleet if m["owner"] == "joe"]


def test_storage_growth_per_bucket(index):
    enrolled(index)
    for name, end, size in (("a", 3600.0 * 1 + 5, 10), ("b", 3600.0 * 1 + 50, 20), ("c", 3600.0 * 3, 40)):
        index.add_archive("a" * 16, archive(name, end, deduplicated_size=size), event("backup", "joe"))
    index.add_archive("a" * 16, archive("d", 3600.0 * 3, "failed", deduplicated_size=99), event("backup", "joe"))
    rows = index.storage_growth(3600, ["joe", "ann"])
    assert [(r["owner"], r["bucket"], r["added"]) for r in rows] == [("joe", 1, 30), ("joe", 3, 40)]
