"""borg's RPC as a homesync session may speak it. Pure, no I/O: a splitter that finds
whole msgpack messages in a byte stream and keeps their exact bytes, a policy that
allows or refuses each client call by what the session may do, and the calls the
filter makes itself to learn which objects a repository already holds.
"""

from __future__ import annotations

from array import array
import heapq
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

import msgpack

MANIFEST_ID = bytes(32)
MAX_MESSAGE = 24 * 1024 * 1024  # a put carries at most 20 MiB + 41 bytes (borg's MAX_OBJECT_SIZE)
FEED = 1024 * 1024  # what the unpacker is given at a time, so one large recv never overflows it
LIST_LIMIT = 100_000  # ids per injected `list` call (borg's LIST_SCAN_LIMIT)
OWN_MSGID = 1 << 62  # msgids of the filter's own calls; a borg client counts up from 1

# Calls that only read (or end a transaction without keeping anything).
READS = frozenset({"negotiate", "open", "get", "list", "__len__", "load_key", "get_free_nonce", "rollback"})
# Calls that add to a repository; put and delete are checked one by one.
ADDS = frozenset({"put", "delete", "commit", "commit_nonce_reservation"})
WHY = {"reader": "a restore or template session may only read",
       "writer": "an agent session may only add backups"}


class FrameError(Exception):
    """The stream is not borg RPC: undecodable, or a message larger than MAX_MESSAGE."""


class Splitter:
    """Whole msgpack messages out of a byte stream, with the stream offset where each ends."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._unpacker = msgpack.Unpacker(raw=True, use_list=False, strict_map_key=False,
                                          max_buffer_size=max_message + FEED)
        self._unfed: deque[memoryview] = deque()
        self._held: deque[memoryview] = deque()
        self._held_at = 0   # stream offset of the first held byte
        self._received = 0  # stream offset after the last byte received
        self.boundary = 0   # stream offset after the last whole message

    def feed(self, data: bytes) -> None:
        """Take more of the stream (kept by reference, not copied)."""
        if data:
            view = memoryview(data)
            self._unfed.append(view)
            self._held.append(view)
            self._received += len(view)

    def next_message(self):
        """Return the next whole message, or None until more bytes arrive. Raise FrameError."""
        while True:
            try:
                message = self._unpacker.unpack()
            except msgpack.OutOfData:
                if not self._unfed:
                    if self._received - self.boundary > self.max_message:
                        raise FrameError("a message larger than the limit") from None
                    return None
                self._feed_slice()
                continue
            except msgpack.BufferFull:
                raise FrameError("a message larger than the limit") from None
            except Exception as e:  # msgpack raises ValueError, FormatError, StackError, …
                raise FrameError(f"undecodable data ({type(e).__name__})") from None
            end = self._unpacker.tell()
            if end - self.boundary > self.max_message:
                raise FrameError("a message larger than the limit")
            self.boundary = end
            return message

    def _feed_slice(self) -> None:
        view = self._unfed.popleft()
        if len(view) > FEED:
            self._unfed.appendleft(view[FEED:])
            view = view[:FEED]
        self._unpacker.feed(view)

    def take(self, upto: int) -> list[memoryview]:
        """Remove and return the held bytes before stream offset upto."""
        out = []
        while self._held and self._held_at < upto:
            view = self._held.popleft()
            if self._held_at + len(view) > upto:
                cut = upto - self._held_at
                self._held.appendleft(view[cut:])
                view = view[:cut]
            out.append(view)
            self._held_at += len(view)
        return out

    def rest(self) -> list[memoryview]:
        """Remove and return every held byte (the caller stops splitting)."""
        return self.take(self._received)


class ExistingIds:
    """The ids a repository held when the session opened it: sorted 8-byte prefixes
    (8 bytes an object; a prefix shared by chance makes a put refused, never allowed)."""

    def __init__(self) -> None:
        self._prefixes = array("Q")
        self._pages: list[array] = []

    def add(self, ids) -> None:
        """Add a batch of ids from a `list` answer."""
        self._pages.append(array("Q", sorted(int.from_bytes(i[:8], "big") for i in ids)))

    def freeze(self) -> None:
        """Merge the sorted batches once every one is in (never a list of every id)."""
        self._prefixes = array("Q", heapq.merge(*self._pages)) if len(self._pages) > 1 else \
            (self._pages[0] if self._pages else array("Q"))
        self._pages = []

    def __contains__(self, object_id: bytes) -> bool:
        prefix = int.from_bytes(object_id[:8], "big")
        at = bisect_left(self._prefixes, prefix)
        return at < len(self._prefixes) and self._prefixes[at] == prefix

    def __len__(self) -> int:
        return len(self._prefixes)

    def nbytes(self) -> int:
        """Return the memory the prefixes take."""
        return self._prefixes.itemsize * len(self._prefixes)


@dataclass(frozen=True)
class Call:
    """One client call: its msgid, method and arguments (keys decoded)."""

    msgid: int | None
    method: str
    args: dict


@dataclass(frozen=True)
class Refusal:
    """A call the session may not make, and why (for the client, the log and the audit)."""

    msgid: int | None
    method: str
    reason: str

    def message(self) -> str:
        """Return the line the client's borg prints."""
        return f"homesync refused {self.method}: {self.reason}"


ALLOW, SNAPSHOT = "allow", "snapshot"  # SNAPSHOT: allow, then learn the existing ids first


def parse_call(message, first: bool) -> Call | Refusal:
    """Given a decoded client message, return it as a Call, or a Refusal if it is not
    the dict format (the legacy tuple is accepted only for the first call, negotiate)."""
    if isinstance(message, dict):
        msgid, method, args = message.get(b"i"), message.get(b"m"), message.get(b"a", {})
    elif first and isinstance(message, tuple) and len(message) == 4 and message[2] == b"negotiate":
        return Call(message[1] if isinstance(message[1], int) else None, "negotiate", {})
    else:
        return Refusal(None, "?", "not borg's RPC format")
    if not isinstance(msgid, int) or isinstance(msgid, bool):
        msgid = None
    if not isinstance(method, bytes) or not isinstance(args, dict) or msgid is None:
        return Refusal(msgid, "?", "not borg's RPC format")
    try:
        name = method.decode("ascii")
        decoded = {k.decode("ascii"): v for k, v in args.items()}
    except (AttributeError, UnicodeDecodeError):
        return Refusal(msgid, "?", "not borg's RPC format")
    return Call(msgid, name[:40], decoded)


class Policy:
    """What one session may call. writer: an agent (machine) session, which may add;
    otherwise a reader (restore, template), which may only read."""

    def __init__(self, writer: bool) -> None:
        self.writer = writer
        self.kind = "writer" if writer else "reader"
        self.calls = 0
        self.open_msgid: int | None = None
        self.snapshot_wanted = False
        self.existing: ExistingIds | None = None  # set once the snapshot is complete
        self._written = array("Q")  # prefixes of the ids this session put

    def decide(self, message) -> tuple[str, Call] | Refusal:
        """Given a decoded client message, return (ALLOW or SNAPSHOT, the call) or a Refusal."""
        call = parse_call(message, first=self.calls == 0)
        self.calls += 1
        if isinstance(call, Refusal):
            return call
        if call.method == "open":
            return self._open(call)
        if call.method in READS:
            return ALLOW, call
        if call.method not in ADDS:
            return Refusal(call.msgid, call.method, WHY[self.kind])
        if not self.writer:
            return Refusal(call.msgid, call.method, WHY["reader"])
        if self.existing is None:
            return Refusal(call.msgid, call.method, "an agent session writes only with the repository "
                                                    "opened exclusively")
        check = {"put": self._put, "delete": self._delete}.get(call.method)
        return check(call) if check else (ALLOW, call)

    def _open(self, call: Call) -> tuple[str, Call] | Refusal:
        if self.open_msgid is not None:
            return Refusal(call.msgid, "open", "one repository a session")
        if call.args.get("create"):
            return Refusal(call.msgid, "open", "the server creates repositories")
        self.open_msgid = call.msgid
        exclusive = call.args.get("exclusive") is True and call.args.get("lock", True) is True
        self.snapshot_wanted = self.writer and exclusive
        return (SNAPSHOT if self.snapshot_wanted else ALLOW), call

    def _put(self, call: Call) -> tuple[str, Call] | Refusal:
        object_id = call.args.get("id")
        if not isinstance(object_id, bytes) or len(object_id) != 32:
            return Refusal(call.msgid, "put", "not an object id")
        if object_id == MANIFEST_ID:
            return ALLOW, call
        if object_id in self.existing:
            return Refusal(call.msgid, "put", "an agent session may not overwrite an object it did not write")
        self._written.append(int.from_bytes(object_id[:8], "big"))
        return ALLOW, call

    def _delete(self, call: Call) -> tuple[str, Call] | Refusal:
        object_id = call.args.get("id")
        # Linear, but borg deletes only at a checkpoint (the checkpoint archive's own object).
        if (isinstance(object_id, bytes) and len(object_id) == 32 and object_id != MANIFEST_ID
                and int.from_bytes(object_id[:8], "big") in self._written):
            return ALLOW, call
        return Refusal(call.msgid, "delete", "an agent session may delete only objects it wrote")


class Snapshot:
    """The filter's own `list` calls that collect the ids a repository holds."""

    def __init__(self) -> None:
        self.ids = ExistingIds()
        self.msgid = OWN_MSGID
        self.done = False

    def request(self, marker: bytes | None = None) -> bytes:
        """Return the next `list` call to send to borg serve."""
        self.msgid += 1
        return msgpack.packb({b"i": self.msgid, b"m": b"list", b"a": {b"limit": LIST_LIMIT, b"marker": marker}},
                             use_bin_type=False)

    def answer(self, message) -> bytes | None:
        """Given borg serve's answer to the last request, return the next request, or None
        when every id is in. Raise FrameError if borg serve refused the call."""
        ids = message.get(b"r") if isinstance(message, dict) else None
        if not isinstance(ids, (tuple, list)):
            raise FrameError("borg serve did not list the repository")
        self.ids.add(ids)
        if len(ids) == LIST_LIMIT:
            return self.request(ids[-1])
        self.ids.freeze()
        self.done = True
        return None


def msgid_of(message) -> int | None:
    """Return the msgid of a request or response (dict or legacy tuple), or None."""
    if isinstance(message, dict):
        return message.get(b"i")
    if isinstance(message, tuple) and len(message) == 4:
        return message[1]
    return None


def refusal_frame(refusal: Refusal) -> bytes:
    """Return the borg exception response the client's borg prints as one clear error."""
    text = refusal.message()
    return msgpack.packb({b"i": refusal.msgid, b"exception_class": "Error", b"exception_args": [text],
                          b"exception_full": [text], b"exception_short": [text], b"exception_trace": False,
                          b"sysinfo": ""}, use_bin_type=False)
