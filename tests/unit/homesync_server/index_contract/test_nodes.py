"""Contract: the server nodes' heartbeats and the leases of jobs run once at a time (issue 14)."""

from __future__ import annotations

import threading


def _node(id_: str = "node-a", heartbeat: float = 100.0, **more) -> dict:
    return dict({"id": id_, "address": "127.0.0.1:2222", "version": "0.1.0", "state": "serving", "sessions": 0,
                 "pid": 42, "started": 90.0, "heartbeat": heartbeat, "heartbeat_seconds": 5.0, "boot": "b00t"}, **more)


def test_a_heartbeat_registers_a_node_and_the_next_one_updates_it(index):
    index.node_heartbeat(_node())
    index.node_heartbeat(_node("node-b", state="draining", sessions=3))
    index.node_heartbeat(_node(heartbeat=110.0, sessions=2))
    nodes = index.nodes()
    assert [(n["id"], n["heartbeat"], n["sessions"], n["state"]) for n in nodes] == [
        ("node-a", 110.0, 2, "serving"), ("node-b", 100.0, 3, "draining")]
    assert nodes[0]["started"] == 90.0 and nodes[0]["heartbeat_seconds"] == 5.0 and nodes[0]["version"] == "0.1.0"
    assert nodes[0]["boot"] == "b00t"
    assert index.forget_node("node-b") and not index.forget_node("node-b")
    assert [n["id"] for n in index.nodes()] == ["node-a"]


def test_a_lease_is_held_until_it_expires_or_is_released(index):
    first = index.take_lease("prune:" + "a" * 16, "node-a:1", "node-a", 30.0, now=100.0)
    assert (first["holder"], first["node"], first["taken"], first["expires"]) == ("node-a:1", "node-a", 100.0, 130.0)
    assert index.take_lease("prune:" + "a" * 16, "node-b:2", "node-b", 30.0, now=120.0)["holder"] == "node-a:1"
    renewed = index.take_lease("prune:" + "a" * 16, "node-a:1", "node-a", 30.0, now=125.0)
    assert (renewed["holder"], renewed["taken"], renewed["expires"]) == ("node-a:1", 100.0, 155.0)
    assert index.renew_lease("prune:" + "a" * 16, "node-a:1", 30.0, now=150.0)
    assert not index.renew_lease("prune:" + "a" * 16, "node-b:2", 30.0, now=150.0)
    assert index.take_lease("prune:" + "a" * 16, "node-b:2", "node-b", 30.0, now=179.0)["holder"] == "node-a:1"
    taken_over = index.take_lease("prune:" + "a" * 16, "node-b:2", "node-b", 30.0, now=180.0)  # expired: node-a died
    assert (taken_over["holder"], taken_over["taken"]) == ("node-b:2", 180.0)
    assert not index.renew_lease("prune:" + "a" * 16, "node-a:1", 30.0, now=181.0)  # the dead holder lost it
    assert not index.release_lease("prune:" + "a" * 16, "node-a:1")
    assert [lease["holder"] for lease in index.leases()] == ["node-b:2"]
    assert index.release_lease("prune:" + "a" * 16, "node-b:2")
    assert index.leases() == []
    assert index.take_lease("prune:" + "a" * 16, "node-a:1", "node-a", 30.0, now=182.0)["holder"] == "node-a:1"


def test_of_many_holders_taking_one_lease_at_once_exactly_one_gets_it(opener):
    """Each holder with a connection of its own, as nodes have (PostgreSQL: concurrent
    transactions; SQLite: one writer at a time)."""
    indexes = [opener() for _ in range(6)]
    start = threading.Barrier(len(indexes))
    got: list[str] = []

    def take(number: int) -> None:
        start.wait()
        holder = f"node-{number}:1"
        if indexes[number].take_lease("drill", holder, f"node-{number}", 60.0, now=100.0)["holder"] == holder:
            got.append(holder)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(len(indexes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 1
    assert [lease["holder"] for lease in indexes[0].leases()] == got
