"""The drill's sandbox on this kernel: a program run through the wrapper writes beneath
the directories it was given and nowhere else, opens no TCP connection, and writes no
file past the size limit; without Landlock a drill refuses to extract."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from homesync.errors import HomesyncError
from homesync_server import sandbox
from homesync_server.actions import drill

pytestmark = pytest.mark.skipif(sandbox.abi_version() < 1, reason="this kernel has no Landlock")


def run(argv, writable, **limits):
    return subprocess.run(sandbox.make_sandboxed_command(argv, writable, **limits), capture_output=True, text=True)


def test_a_write_outside_the_allowed_directories_is_refused(tmp_path):
    allowed, forbidden = tmp_path / "allowed", tmp_path / "forbidden"
    allowed.mkdir()
    forbidden.mkdir()
    (forbidden / "existing").write_text("keep")
    done = run(["/usr/bin/touch", str(allowed / "yes"), str(forbidden / "no")], [str(allowed)])
    assert done.returncode != 0 and "Permission denied" in done.stderr
    assert (allowed / "yes").exists() and not (forbidden / "no").exists()
    for argv in (["/bin/rm", str(forbidden / "existing")], ["/bin/sh", "-c", f"echo x > {forbidden / 'existing'}"],
                 ["/bin/ln", "-s", "/", str(forbidden / "link")], ["/bin/mkdir", str(forbidden / "d")],
                 ["/bin/mv", str(forbidden / "existing"), str(allowed / "taken")]):
        assert run(argv, [str(allowed)]).returncode != 0, argv
    assert (forbidden / "existing").read_text() == "keep"
    assert run(["/usr/bin/mknod", str(allowed / "null"), "c", "1", "3"], [str(allowed)]).returncode != 0
    assert run(["/usr/bin/mkfifo", str(allowed / "fifo")], [str(allowed)]).returncode == 0
    assert sorted(p.name for p in forbidden.iterdir()) == ["existing"]


def test_no_tcp_and_no_file_past_the_limit(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = run([sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}))"],
                      [str(tmp_path)])
    assert connect.returncode != 0 and "PermissionError" in connect.stderr
    big = run(["/bin/sh", "-c", f"head -c 5000 /dev/zero > {tmp_path / 'big'}"], [str(tmp_path)], max_file_size=1000)
    assert big.returncode != 0 and (tmp_path / "big").stat().st_size == 1000


def test_a_program_that_cannot_be_confined_is_not_run(tmp_path, monkeypatch):
    done = subprocess.run([sys.executable, "-m", "homesync_server.sandbox", "--write", str(tmp_path / "missing"),
                           "--", "/usr/bin/touch", str(tmp_path / "ran")], capture_output=True, text=True)
    assert done.returncode == 2 and "sandbox: not running touch" in done.stderr and not (tmp_path / "ran").exists()
    monkeypatch.setattr(drill.sandbox, "abi_version", lambda: 0)
    with pytest.raises(HomesyncError, match="no Landlock: a drill does not extract a client's archive unconfined"):
        drill._vet(None, None, "archive", {}, "admin")
