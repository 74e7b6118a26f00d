"""homesync's RPC wire format, shared by agent and server: length-prefixed msgpack
frames with a size limit, and the schema of every operation's arguments.

Nothing here does I/O beyond the two callables it is given; nothing is unpickled.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import msgpack

from homesync.errors import HomesyncError, ProtocolError, from_wire

VERSION = 1
MAX_FRAME = 1 << 20  # 1 MiB: the largest listing we send is far below this
RPC_COMMAND = "homesync-rpc"
_HEADER = struct.Struct(">I")

# op name -> {argument: (type, required)}. The server refuses anything else.
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "whoami": {},
    "machine.enroll": {
        "name": (str, True), "hostname": (str, True), "public_key": (str, True),
        "passphrase": (bytes, True), "replace_key": (bool, False),
    },
    "machines.list": {},
    "archives.list": {"machine_id": (str, True)},
    "backup.report": {
        "name": (str, True), "start": (float, True), "end": (float, True), "files": (int, True),
        "original_size": (int, True), "compressed_size": (int, True),
        "deduplicated_size": (int, True), "result": (str, True), "error": (str, False),
    },
    "agent.report": {"state": (str, True), "reason": (str, False), "version": (str, False)},
    # the fleet policy of this machine; applied: the version the agent runs with now
    "policy.get": {"applied": (int, False)},
    "restore.grant": {"machine_id": (str, True), "public_key": (str, True)},
    # a restore (or find) is over: the one-off key it was granted is refused from now on
    "restore.end": {"machine_id": (str, True), "public_key": (str, True)},
    # a machine's file catalog, sealed by the client with its repository passphrase, in parts
    "catalog.put": {"offset": (int, True), "data": (bytes, True), "final": (bool, True)},
    "catalog.get": {"machine_id": (str, True), "offset": (int, True)},
    "machine.adopt": {"machine_id": (str, True), "public_key": (str, True), "hostname": (str, True)},
    "restore.report": {
        "machine_id": (str, True), "archive": (str, True), "hostname": (str, True),
        "files": (int, True), "bytes": (int, True), "seconds": (float, True),
        "result": (str, True), "error": (str, False),
    },
    "template.grant": {"name": (str, True), "public_key": (str, True)},
    "templates.list": {},
    "template.report": {
        "template_id": (str, True), "archive": (str, True), "hostname": (str, True),
        "files": (int, True), "bytes": (int, True), "seconds": (float, True),
        "result": (str, True), "error": (str, False),
    },
}


def encode_frame(message: dict) -> bytes:
    """Given a message, return its frame (4-byte big-endian length + msgpack body).
    Raise ProtocolError if it is larger than MAX_FRAME."""
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


def read_frame(read_exactly: Callable[[int], bytes]) -> dict:
    """Given a function returning exactly n bytes (b"" at end of stream), return the next
    message. Raise EOFError at a clean end, ProtocolError on anything malformed."""
    header = read_exactly(_HEADER.size)
    if not header:
        raise EOFError
    if len(header) != _HEADER.size:
        raise ProtocolError("truncated frame header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    body = read_exactly(size)
    if len(body) != size:
        raise ProtocolError("truncated frame")
    return decode_body(body)


def decode_body(body: bytes) -> dict:
    """Given a frame body, return the message (a map with text keys); raise ProtocolError."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise ProtocolError(f"malformed message: {type(e).__name__}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a map")
    return message


def request(op: str, args: dict[str, Any]) -> dict:
    """Given an operation and its arguments, return the request message after checking
    them against the schema."""
    check_request({"v": VERSION, "op": op, "args": args})
    return {"v": VERSION, "op": op, "args": args}


def check_request(message: dict) -> tuple[str, dict[str, Any]]:
    """Given a decoded request, return (op, args); raise ProtocolError unless it matches
    the schema exactly (known op, no unknown arguments, right types)."""
    op, args = message.get("op"), message.get("args")
    if message.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.get('v')!r}")
    if not isinstance(op, str) or op not in SCHEMA:
        raise ProtocolError(f"unknown operation {op!r}")
    if not isinstance(args, dict):
        raise ProtocolError("arguments must be a map")
    spec = SCHEMA[op]
    for name, value in args.items():
        if name not in spec:
            raise ProtocolError(f"{op}: unknown argument {name!r}")
        want = spec[name][0]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ProtocolError(f"{op}: argument {name!r} has the wrong type")
    missing = [n for n, (_, required) in spec.items() if required and n not in args]
    if missing:
        raise ProtocolError(f"{op}: missing argument {missing[0]!r}")
    return op, args


def ok(result: Any) -> dict:
    """Return a success response carrying result."""
    return {"ok": True, "result": result}


def failure(error: HomesyncError) -> dict:
    """Return an error response for error (its kind and its one line, nothing more)."""
    return {"ok": False, "kind": error.kind, "message": error.line()}


def unwrap(response: dict) -> Any:
    """Given a response, return its result or raise the error it carries."""
    if response.get("ok") is True:
        return response.get("result")
    if response.get("ok") is False:
        raise from_wire(str(response.get("kind")), str(response.get("message")))
    raise ProtocolError("malformed response")


# A server's cause on a session's stderr, for clients that are not reading RPC frames
# (the shim under borg): "homesync-server: error <kind>: <line>".
CAUSE_PREFIX = "homesync-server: error "


def cause_line(error: HomesyncError) -> bytes:
    """Given an error, return the stderr line that names it to the client (kind and line)."""
    return f"{CAUSE_PREFIX}{error.kind}: {error.line()}\n".encode()


def parse_cause(line: bytes) -> HomesyncError | None:
    """Given one line of a session's stderr, return the error it names, or None."""
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith(CAUSE_PREFIX) or ": " not in text[len(CAUSE_PREFIX):]:
        return None
    kind, message = text[len(CAUSE_PREFIX):].split(": ", 1)
    return from_wire(kind, message)

