"""The filter's pumps without processes: client calls are held while the filter lists
the repository's ids, its own answers never reach the client, and a refused call and
everything after it never reach borg serve."""

from __future__ import annotations

import io
import os
import threading

import msgpack

from homesync_server import borgrpc
from homesync_server.borgserve import FilteredSession
from tests.unit.homesync_server.test_borgrpc import EXISTING, call, decoded, negotiate_tuple


class Stdin(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


def answer(msgid: int, result) -> bytes:
    return msgpack.packb({b"i": msgid, b"r": result}, use_bin_type=False)


def test_an_agent_session_is_held_until_the_ids_are_known_then_a_put_over_one_is_refused():
    stdin, refused = Stdin(), []
    session = FilteredSession(borgrpc.Policy(writer=True), stdin, refused.append)
    new = os.urandom(32)
    before = negotiate_tuple() + call(2, "open", path=b"/./x", exclusive=True, lock=True)
    after = call(3, "put", id=new, data=b"x") + call(4, "put", id=EXISTING, data=bytes(8)) + call(5, "commit")
    client = threading.Thread(target=lambda: refused.append(session.from_client(before + after)))
    client.start()
    to_client = b"".join(bytes(v) for v in session.from_server(answer(1, {b"server_version": (1, 4, 5)})))
    client.join(timeout=0.2)
    assert client.is_alive() and bytes(stdin.data) == before  # held: nothing after the open
    to_client += b"".join(bytes(v) for v in session.from_server(answer(2, b"repo-id")))
    listing = decoded(bytes(stdin.data[len(before):]))
    assert listing[b"m"] == b"list" and listing[b"i"] > 2**60
    to_client += b"".join(bytes(v) for v in session.from_server(answer(listing[b"i"], (EXISTING, bytes(32)))))
    client.join(timeout=5)
    assert to_client == answer(1, {b"server_version": (1, 4, 5)}) + answer(2, b"repo-id")  # ours taken out
    assert bytes(stdin.data) == before + msgpack.packb(listing, use_bin_type=False) + call(3, "put", id=new, data=b"x")
    assert session.refusal.method == "put" and session.refusal.msgid == 4 and refused == [session.refusal, False]
    assert session.raw_responses and session.later_calls(b"") == [5]


def test_a_reader_session_copies_answers_raw_after_the_open():
    stdin = Stdin()
    session = FilteredSession(borgrpc.Policy(writer=False), stdin, lambda r: None)
    assert session.from_client(negotiate_tuple() + call(2, "open", path=b"/./t", exclusive=True) + call(3, "get"))
    out = session.from_server(answer(1, {}) + answer(2, b"id") + b"\xc1partial")
    assert session.raw_responses and b"".join(bytes(v) for v in out).endswith(b"\xc1partial")
    assert not session.from_client(call(4, "save_key", keydata=b""))
    assert session.refusal.method == "save_key"
