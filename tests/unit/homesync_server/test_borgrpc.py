"""The borg RPC filter's pure core: the stream splitter keeps each message's exact
bytes whatever the read boundaries, and the policy lets an agent only add and a
restore or template session only read."""

from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homesync_server import borgrpc
from homesync_server.borgrpc import ALLOW, MANIFEST_ID, SNAPSHOT, Policy, Refusal, Snapshot, Splitter

EXISTING = os.urandom(32)


def call(msgid: int, method: str, **args) -> bytes:
    return msgpack.packb({b"i": msgid, b"m": method.encode(), b"a": {k.encode(): v for k, v in args.items()}},
                         use_bin_type=False)


def negotiate_tuple(msgid: int = 1) -> bytes:
    # borg's client sends its first call, negotiate, in the legacy tuple format
    return msgpack.packb((1, msgid, "negotiate", [{b"client_version": (1, 4, 5)}]), use_bin_type=False)


def decoded(raw: bytes):
    return msgpack.unpackb(raw, raw=True, use_list=False, strict_map_key=False)


def writer(existing=(EXISTING,)) -> Policy:
    """An agent policy whose repository was opened exclusively and holds `existing`."""
    policy = Policy(writer=True)
    assert policy.decide(decoded(negotiate_tuple()))[0] == ALLOW
    assert policy.decide(decoded(call(2, "open", path=b"/./x", exclusive=True, lock=True)))[0] == SNAPSHOT
    snapshot = Snapshot()
    snapshot.request()
    assert snapshot.answer({b"i": snapshot.msgid, b"r": tuple(existing)}) is None
    policy.existing = snapshot.ids
    return policy


def decide(policy: Policy, raw: bytes):
    return policy.decide(decoded(raw))


def test_an_agent_may_add_but_not_overwrite_delete_or_rekey():
    policy = writer()
    new = os.urandom(32)
    assert decide(policy, call(3, "get", id=MANIFEST_ID))[0] == ALLOW
    assert decide(policy, call(4, "put", id=new, data=b"x"))[0] == ALLOW
    assert decide(policy, call(5, "put", id=MANIFEST_ID, data=b"m"))[0] == ALLOW
    assert decide(policy, call(6, "delete", id=new))[0] == ALLOW  # its own checkpoint's object
    assert decide(policy, call(7, "commit", save_space=False))[0] == ALLOW
    for raw in (call(8, "put", id=EXISTING, data=b"\0" * 64), call(9, "delete", id=EXISTING),
                call(10, "delete", id=MANIFEST_ID), call(11, "save_key", keydata=b"garbage"),
                call(12, "destroy"), call(13, "break_lock"), call(14, "check", repair=True),
                call(15, "inject_exception", kind="x"), call(16, "scan"), call(17, "os.system"),
                call(18, "put", id=b"short", data=b"x"), call(19, "open", path=b"/./x")):
        refusal = decide(policy, raw)
        assert isinstance(refusal, Refusal) and refusal.msgid == decoded(raw)[b"i"], raw[:40]
    assert "save_key" in decide(policy, call(20, "save_key", keydata=b"")).message()


def test_a_reader_may_only_read():
    policy = Policy(writer=False)
    assert decide(policy, negotiate_tuple())[0] == ALLOW
    assert decide(policy, call(2, "open", path=b"/./t", exclusive=True, lock=True))[0] == ALLOW  # no snapshot
    for method in ("get", "list", "load_key", "__len__", "get_free_nonce", "rollback"):
        assert decide(policy, call(3, method))[0] == ALLOW
    for raw in (call(4, "put", id=os.urandom(32), data=b"x"), call(5, "delete", id=os.urandom(32)),
                call(6, "commit"), call(7, "save_key", keydata=b""), call(8, "commit_nonce_reservation")):
        refusal = decide(policy, raw)
        assert isinstance(refusal, Refusal) and "only read" in refusal.reason


def test_an_agent_writes_only_after_an_exclusive_open():
    policy = Policy(writer=True)
    decide(policy, negotiate_tuple())
    assert decide(policy, call(2, "open", path=b"/./x", exclusive=False))[0] == ALLOW
    assert isinstance(decide(policy, call(3, "put", id=os.urandom(32), data=b"x")), Refusal)
    assert isinstance(Policy(writer=True).decide(decoded(call(1, "put", id=os.urandom(32), data=b""))), Refusal)
    assert isinstance(decide(Policy(writer=True), call(1, "open", path=b"/./x", create=True)), Refusal)


def test_the_legacy_tuple_format_and_garbage_are_refused():
    policy = writer()
    later = msgpack.packb((1, 9, "save_key", [b"x"]), use_bin_type=False)
    assert isinstance(decide(policy, later), Refusal)
    assert isinstance(decide(policy, negotiate_tuple(10)), Refusal)  # only as the first call
    for message in (7, b"put", (), {b"i": b"1", b"m": b"get", b"a": {}}, {b"i": 1, b"m": 5, b"a": {}},
                    {b"i": 1, b"m": b"get", b"a": [1]}, {b"i": True, b"m": b"get", b"a": {}}):
        assert isinstance(Policy(writer=False).decide(message), Refusal)


def test_an_oversized_or_undecodable_frame_is_a_frame_error():
    splitter = Splitter(max_message=1000)
    splitter.feed(call(1, "put", id=os.urandom(32), data=b"x" * 2000))
    with pytest.raises(borgrpc.FrameError):
        while splitter.next_message() is not None:
            pass
    partial = Splitter(max_message=1000)
    partial.feed(call(1, "put", id=os.urandom(32), data=b"x" * 5000)[:1500])  # never completes: still refused
    with pytest.raises(borgrpc.FrameError):
        partial.next_message()
    garbage = Splitter()
    garbage.feed(b"\xc1\xc1\xc1")  # 0xc1 is never used in msgpack
    with pytest.raises(borgrpc.FrameError):
        garbage.next_message()


def test_a_large_put_in_one_read_is_split_without_overflow():
    data = os.urandom(20 * 1024 * 1024)
    raw = call(1, "put", id=os.urandom(32), data=data) + call(2, "commit")
    splitter = Splitter()
    splitter.feed(raw)
    first = splitter.next_message()
    assert first[b"a"][b"data"] == data and splitter.next_message()[b"m"] == b"commit"
    assert b"".join(splitter.take(splitter.boundary)) == raw


def _stream():
    new = [os.urandom(32) for _ in range(3)]
    return [negotiate_tuple(), call(2, "open", path=b"/./x", exclusive=True, lock=True),
            call(3, "get", id=MANIFEST_ID), call(4, "put", id=new[0], data=os.urandom(3000)),
            call(5, "put", id=new[1], data=b""), call(6, "delete", id=new[0]), call(7, "commit"),
            call(8, "put", id=EXISTING, data=b"\0" * 10), call(9, "get", id=new[2])]


def _run(raws: list[bytes], cuts: list[int]) -> tuple[list, bytes]:
    """Feed the stream cut at the given offsets; return the decisions and the bytes let through."""
    stream = b"".join(raws)
    policy, splitter, decisions, passed = Policy(writer=True), Splitter(), [], b""
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in zip(bounds, bounds[1:]):
        splitter.feed(stream[a:b])
        while decisions[-1:] != ["stop"] and (start := splitter.boundary, message := splitter.next_message())[1]:
            decision = policy.decide(message)
            if isinstance(decision, Refusal):
                passed += b"".join(bytes(v) for v in splitter.take(start))
                decisions += [decision, "stop"]
                continue
            if decision[0] == SNAPSHOT:  # what the session does once borg serve answered the open
                policy.existing = writer().existing
            passed += b"".join(bytes(v) for v in splitter.take(splitter.boundary))
            decisions.append(decision[0])
    return decisions, passed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), max_size=30))
def test_decisions_and_forwarded_bytes_do_not_depend_on_read_boundaries(cuts):
    raws = _stream()
    whole = _run(raws, [])
    assert _run(raws, cuts) == whole
    decisions, passed = whole
    assert decisions[1] == SNAPSHOT and isinstance(decisions[-2], Refusal) and decisions[-2].method == "put"
    assert passed == b"".join(raws[:7])  # exactly the bytes before the refused call


def test_the_snapshot_pages_through_list_and_ids_are_looked_up_by_prefix():
    snapshot = Snapshot()
    first = decoded(snapshot.request())
    assert first[b"m"] == b"list" and first[b"a"][b"marker"] is None and first[b"i"] > 2**60
    page = tuple(os.urandom(32) for _ in range(borgrpc.LIST_LIMIT))
    following = decoded(snapshot.answer({b"i": snapshot.msgid, b"r": page}))
    assert following[b"a"][b"marker"] == page[-1]
    assert snapshot.answer({b"i": snapshot.msgid, b"r": (EXISTING,)}) is None and snapshot.done
    assert page[12345] in snapshot.ids and EXISTING in snapshot.ids and os.urandom(32) not in snapshot.ids
    assert len(snapshot.ids) == borgrpc.LIST_LIMIT + 1 and snapshot.ids.nbytes() == 8 * len(snapshot.ids)
    with pytest.raises(borgrpc.FrameError):
        Snapshot().answer({b"i": 1, b"exception_class": b"ObjectNotFound"})


def test_the_refusal_frame_is_what_borgs_client_turns_into_one_error():
    frame = decoded(borgrpc.refusal_frame(Refusal(42, "save_key", "an agent session may only add backups")))
    assert frame[b"i"] == 42 and frame[b"exception_class"] == b"Error"
    assert frame[b"exception_args"][0].decode() == "homesync refused save_key: an agent session may only add backups"
