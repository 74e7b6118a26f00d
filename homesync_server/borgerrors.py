"""What `borg serve` tells a client about the server, taken out: its errors name the
server's paths and its sysinfo carries the server's argv. Replies pass through as
they are; an error reply is rebuilt with the repository's name for its paths, no
traceback and no sysinfo; stderr lines get the same paths replaced, sysinfo dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import msgpack

from homesync_server.borgrpc import Splitter

# sysinfo()'s lines (borg/helpers/misc.py): the server's platform, pid, cwd and argv.
_SYSINFO = (b"Platform:", b"Linux:", b"Borg:", b"PID:", b"sys.argv:", b"SSH_ORIGINAL_COMMAND:")
_MAX_REPLY = 64 * 1024 * 1024


class Scrubber:
    """Rewrites one borg serve's output for the client (one per session and stream)."""

    def __init__(self, repository: Path, data: Path) -> None:
        self._replacements = [(str(repository).encode(), repository.name.encode()),
                              (str(data).rstrip("/").encode() + b"/", b"")]
        self._partial = b""  # a stderr line not ended yet

    def text(self, raw: bytes) -> bytes:
        """Return raw with the server's paths replaced."""
        for path, name in self._replacements:
            raw = raw.replace(path, name)
        return raw

    def lines(self, chunk: bytes) -> bytes:
        """Given the next stderr bytes, return its complete lines with paths replaced
        and sysinfo lines left out (a line not ended yet waits for the next chunk)."""
        lines = (self._partial + chunk).splitlines(keepends=True)
        self._partial = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        return b"".join(self.text(line) for line in lines
                        if not line.split(b"Remote: ", 1)[-1].lstrip().startswith(_SYSINFO))

    def reply(self, message: dict) -> dict:
        """Return an error reply without traceback, sysinfo or server paths."""
        short = [self.text(s) if isinstance(s, bytes) else s for s in message.get(b"exception_short", [])]
        return {**message, b"exception_args": [self._value(a) for a in message.get(b"exception_args") or []],
                b"exception_full": short, b"exception_short": short, b"exception_trace": False, b"sysinfo": b""}

    def _value(self, value):
        if isinstance(value, str):
            return self.text(value.encode()).decode()
        return self.text(value) if isinstance(value, bytes) else value


class ReplyStream:
    """Splits borg serve's stdout into replies (borgrpc.Splitter, the filter's own
    splitter), passing each through byte for byte but an error reply, which is scrubbed."""

    def __init__(self, scrubber: Scrubber, on_error: Callable[[dict], None] = lambda reply: None) -> None:
        self._scrubber = scrubber
        self._on_error = on_error  # sees each error reply as borg sent it, before the client does
        self._replies = Splitter(max_message=_MAX_REPLY)

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the stream; return what may go to the client now.
        Raise FrameError if borg serve's output is not borg RPC."""
        replies, out = self._replies, []
        replies.feed(data)
        while True:
            begin = replies.boundary
            message = replies.next_message()
            if message is None:
                break
            if isinstance(message, dict) and b"exception_class" in message:
                self._on_error(message)
                out += replies.take(begin)
                out.append(msgpack.packb(self._scrubber.reply(message), use_bin_type=False))
                replies.take(replies.boundary)
        out += replies.take(replies.boundary)
        return b"".join(out)
