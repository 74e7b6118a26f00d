"""Contract: archive reports are idempotent, the repository wins over a report, prune forgets."""

from __future__ import annotations

import pytest

from homesync.errors import NotFoundError
from homesync_server.index import PRUNING, event

from .helpers import MACHINE, archive, enrolled


def test_archive_reports_are_idempotent_and_need_a_machine(index):
    enrolled(index)
    index.add_archive(MACHINE, archive(), event("backup", "joe"))
    index.add_archive(MACHINE, archive(), event("backup", "joe"))
    assert len(index.archives(MACHINE)) == 1
    with pytest.raises(NotFoundError):
        index.add_archive("9" * 16, archive(), event("backup", "joe"))
    assert len(index.audit_events(action="backup")) == 2


def test_a_failed_report_never_overwrites_a_complete_archive(index):
    enrolled(index)
    index.add_archive(MACHINE, archive(files=3), event("backup", "joe"))
    index.add_archive(MACHINE, archive(result="failed", files=1, error="boom"), event("backup", "joe"))
    (row,) = index.archives(MACHINE)
    assert (row["result"], row["files"], row["error"]) == ("success", 3, "")


def test_a_report_after_the_check_keeps_what_the_server_observed(index):
    enrolled(index)
    found = archive("n", 10.0, error="", observed=12.0, flag="", archive_id="ab")
    index.observe_archives(MACHINE, [found], [], event("archives_observed", "server"))
    report = dict(found, observed=99.0, flag="claims the future", files=4, result="warning")
    del report["archive_id"]
    index.add_archive(MACHINE, report, event("backup", "joe"))
    (row,) = index.archive_observations(MACHINE)
    assert (row["observed"], row["flag"], row["archive_id"], row["result"]) == (12.0, "", "ab", "warning")


def test_a_check_takes_borgs_figures_for_an_interrupted_report_and_flags_what_it_saw(index):
    enrolled(index)
    index.add_archive(MACHINE, archive("x", result="interrupted", files=1), event("backup", "joe"))
    index.add_archive(MACHINE, archive("y"), event("backup", "joe"))
    seen = [{"name": "y", "archive_id": "id-y", "flag": "outside its session"}]
    index.observe_archives(MACHINE, [archive("x", files=7, error="", observed=20.0, flag="", archive_id="id-x")],
                           seen, None)
    rows = {r["name"]: r for r in index.archive_observations(MACHINE)}
    assert (rows["x"]["result"], rows["x"]["archive_id"]) == ("success", "id-x")
    assert [a["files"] for a in index.archives(MACHINE) if a["name"] == "x"] == [7]
    assert (rows["y"]["archive_id"], rows["y"]["flag"]) == ("id-y", "outside its session")


def test_archives_come_oldest_first_and_prune_forgets_them_with_its_event(index):
    enrolled(index)
    for name, end in (("b", 30.0), ("a", 20.0), ("c", 40.0)):
        index.add_archive(MACHINE, archive(name, end), event("backup", "joe"))
    assert [a["name"] for a in index.archives(MACHINE)] == ["a", "b", "c"]
    index.mark_pruning(MACHINE, ["a", "b"])
    assert {r["name"]: r["archive_id"] for r in index.archive_observations(MACHINE)} == \
        {"a": PRUNING, "b": PRUNING, "c": ""}
    index.remove_archives(MACHINE, ["a", "b"], event("prune", "server", MACHINE))
    assert [a["name"] for a in index.archives(MACHINE)] == ["c"]
    assert index.fleet()[0]["archives"] == 1 and len(index.audit_events(action="prune")) == 1


def test_the_fleet_summary_follows_every_write(index):
    enrolled(index)
    index.add_archive(MACHINE, archive("a", 20.0, deduplicated_size=50), event("backup", "joe"))
    index.add_archive(MACHINE, archive("b", 30.0, "failed", deduplicated_size=7), event("backup", "joe"))
    (row,) = index.fleet()
    assert (row["archives"], row["last_backup"], row["deduplicated_size"], row["failed"]) == (1, 20.0, 57, 1)
    index.observe_archives(MACHINE, [], [{"name": "a", "archive_id": "i", "flag": "claims the future"}], None)
    assert index.fleet()[0]["archives"] == 0 and index.fleet()[0]["last_backup"] is None
