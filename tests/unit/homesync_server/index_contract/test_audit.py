"""Contract: the audit log is one hash chain, ids never reused, with any number of writers."""

from __future__ import annotations

import threading

from homesync_server import audit
from homesync_server.index import event

from .helpers import MACHINE, enrolled


def _verdict(index) -> audit.Verdict:
    rows, after = [], 0
    while page := index.audit_chain_page(after, limit=7):
        rows += page
        after = page[-1]["id"]
    return audit.verify(rows, index.audit_row_with_hash, index.audit_sequence())


def test_events_chain_and_verify(index):
    enrolled(index)
    for n in range(20):
        index.audit("thing", "joe", MACHINE, "10.0.0.1", n=n, text="é")
    verdict = _verdict(index)
    assert verdict.intact and verdict.checked == 21 and verdict.head_id == 21
    assert index.audit_sequence() == 21
    head = index.audit_chain_page(20)[0]
    assert index.audit_row_with_hash(head["hash"]) == 21 and index.audit_row_with_hash("0" * 64) is None


def test_events_are_read_back_as_written(index):
    index.audit("one", "joe", None, "src", a=[1, 2], b={"c": None})
    index.audit("two", "ann")
    (one,) = index.audit_events(action="one")
    assert (one["actor"], one["machine_id"], one["source"], one["detail"]) == ("joe", None, "src",
                                                                                {"a": [1, 2], "b": {"c": None}})
    assert [e["action"] for e in index.audit_events()] == ["one", "two"]
    assert index.audit_events(since=one["at"] + 3600) == []


def test_concurrent_writers_keep_one_chain(opener, index):
    writers, start = [opener() for _ in range(4)], threading.Barrier(4)

    def write(w):
        start.wait()
        for n in range(25):
            w.audit("concurrent", "joe", n=n)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = _verdict(index)
    assert verdict.intact and verdict.checked == 100 and index.audit_sequence() == 100


def test_a_failed_write_leaves_no_event_and_no_gap(index):
    enrolled(index)
    try:
        with index._transaction() as db:
            index._insert_audit(db, event("lost", "joe"))
            raise RuntimeError("the write fails after its event")
    except RuntimeError:
        pass
    index.audit("kept", "joe")
    assert [e["action"] for e in index.audit_events()] == ["enroll", "kept"]
    assert _verdict(index).intact


def test_activity_reads_events_with_their_machine(index):
    enrolled(index)
    enrolled(index, "b" * 16, "Desk", "ann")
    first = index.audit_events()[0]["at"]
    index.audit("backup", "joe", MACHINE)
    index.audit("login", "ann", "b" * 16)
    index.audit("noise", "joe")
    rows = index.activity(first - 1, first + 3600, None, ("noise",), 10)
    assert [(r["action"], r["machine_owner"]) for r in rows] == [("enroll", "joe"), ("enroll", "ann"),
                                                                  ("backup", "joe"), ("login", "ann")]
    assert [r["action"] for r in index.activity(first - 1, first + 3600, "joe", (), 2)] == ["backup", "noise"]
    assert index.activity_counts(first - 1, first + 3600, "ann", ()) == {"enroll": 1, "login": 1}
