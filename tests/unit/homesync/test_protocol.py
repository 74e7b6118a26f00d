"""RPC frames: round trips, size limits, truncation, and schema checks."""

from __future__ import annotations

import io
import struct

import msgpack
import pytest
from hypothesis import given, strategies as st

from homesync import protocol
from homesync.errors import ConflictError, HomesyncError, NotFoundError, ProtocolError

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30)


def _reader(data: bytes):
    stream = io.BytesIO(data)
    return lambda n: stream.read(n)


@given(st.dictionaries(st.text(), values, max_size=8))
def test_frames_round_trip(message):
    assert protocol.read_frame(_reader(protocol.encode_frame(message))) == message


@given(st.dictionaries(st.text(), values, min_size=1, max_size=8), st.data())
def test_a_truncated_frame_is_an_error_never_a_partial_message(message, data):
    frame = protocol.encode_frame(message)
    cut = data.draw(st.integers(1, len(frame) - 1))
    with pytest.raises(ProtocolError):
        protocol.read_frame(_reader(frame[:cut]))


def test_end_of_stream_between_frames_is_a_clean_end():
    with pytest.raises(EOFError):
        protocol.read_frame(_reader(b""))


def test_oversized_frames_are_refused_both_ways():
    with pytest.raises(ProtocolError):
        protocol.encode_frame({"blob": b"x" * (protocol.MAX_FRAME + 1)})
    header = struct.pack(">I", protocol.MAX_FRAME + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.read_frame(_reader(header + b"x" * 10))


@given(st.binary(max_size=200))
def test_garbage_bodies_are_protocol_errors(body):
    try:
        message = protocol.decode_body(body)
    except ProtocolError:
        return
    assert isinstance(message, dict)


def test_non_map_and_non_text_keys_are_refused():
    with pytest.raises(ProtocolError):
        protocol.decode_body(msgpack.packb([1, 2]))
    with pytest.raises(ProtocolError):
        protocol.decode_body(msgpack.packb({1: 2}))


def test_requests_are_checked_against_the_schema():
    assert protocol.check_request(protocol.request("archives.list", {"machine_id": "0" * 16}))[0] == "archives.list"
    for bad in ({"v": 1, "op": "os.system", "args": {}},
                {"v": 2, "op": "whoami", "args": {}},
                {"v": 1, "op": "whoami", "args": []},
                {"v": 1, "op": "archives.list", "args": {}},
                {"v": 1, "op": "archives.list", "args": {"machine_id": 5}},
                {"v": 1, "op": "archives.list", "args": {"machine_id": "x", "path": "/etc"}},
                {"v": 1, "op": "backup.report", "args": dict.fromkeys(
                    ("name", "result"), "x") | dict.fromkeys(("start", "end"), 1.0) | dict.fromkeys(
                    ("files", "original_size", "compressed_size", "deduplicated_size"), True)}):
        with pytest.raises(ProtocolError):
            protocol.check_request(bad)


def test_errors_cross_the_wire_with_their_kind():
    with pytest.raises(NotFoundError, match="no such machine"):
        protocol.unwrap(protocol.failure(NotFoundError("no such machine")))
    with pytest.raises(ConflictError):
        protocol.unwrap(protocol.failure(ConflictError("taken", "choose another")))
    with pytest.raises(HomesyncError):
        protocol.unwrap({"ok": False, "kind": "made-up", "message": "x"})
    assert protocol.unwrap(protocol.ok([1])) == [1]
