"""borg serve's replies on their way to the client: passed through byte for byte, but
an error reply, which loses its traceback, sysinfo and the server's paths."""

from __future__ import annotations

from pathlib import Path

import msgpack

from homesync import console, names
from homesync_server.borgerrors import ReplyStream, Scrubber
from homesync_server.borgrpc import FrameError

import pytest

SCRUBBER = Scrubber(Path("/srv/data/repos/0123456789abcdef"), Path("/srv/data"))


def _pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=False)


def test_replies_pass_unchanged_and_errors_lose_paths_tracebacks_and_argv():
    error = _pack({b"i": 2, b"exception_class": "PathNotAllowed", b"exception_args": ["/srv/data/repos/x"],
                   b"exception_full": ["Traceback (most recent call last):\n  File \"/srv/data/x\""],
                   b"exception_short": ["Repository path not allowed: /srv/data/repos/x"],
                   b"exception_trace": True, b"sysinfo": "sys.argv: ['borg', 'serve']"})
    fine = _pack({b"i": 1, b"r": b"\xaf" * 300_000})
    stream = fine + error + fine
    out = ReplyStream(SCRUBBER)
    sent = b"".join(out.feed(stream[i:i + 4096]) for i in range(0, len(stream), 4096))
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(sent)
    first, scrubbed, last = list(unpacker)
    assert sent.startswith(fine) and sent.endswith(fine)
    assert scrubbed[b"exception_class"] == b"PathNotAllowed" and scrubbed[b"exception_args"] == [b"repos/x"]
    assert b"/srv/data" not in sent and b"sys.argv" not in sent and b"Traceback" not in sent


def test_stderr_lines_lose_paths_and_sysinfo_even_when_split():
    lines = (b"$LOG ERROR borg.remote Remote: failed at /srv/data/repos/0123456789abcdef/lock\n"
             b"$LOG ERROR borg.remote Remote: sys.argv: ['borg', 'serve', '--restrict-to-repository']\n")
    out = SCRUBBER.lines(lines[:70]) + SCRUBBER.lines(lines[70:])
    assert out == b"$LOG ERROR borg.remote Remote: failed at 0123456789abcdef/lock\n"


@pytest.mark.parametrize("hostname", ["a\x1bb", "a\rb", "a\nb", "bidi\u202e", "zero\u200bwidth", "x" * 256])
def test_host_names_with_control_characters_are_refused(hostname):
    with pytest.raises(names.InvalidNameError):
        names.hostname(hostname)


def test_tables_show_control_characters_as_escapes():
    assert console.printable("joe's laptop") == "joe's laptop"
    assert console.printable("h\x1b[2J\r\n\u202e") == "h\\x1b[2J\\x0d\\x0a\\u202e"


def test_output_that_is_not_borg_rpc_is_not_passed_on():
    out = ReplyStream(SCRUBBER)
    with pytest.raises(FrameError):
        out.feed(b"\xc1" + _pack({b"i": 1, b"r": None}))  # 0xc1 is never used by msgpack
