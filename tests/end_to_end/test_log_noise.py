"""The server's log says what matters, once: a client ending its session normally and a
TCP health check (connect and close, or something that is not SSH) are no errors and
leave no traceback; a failed restore is audited; an --output file that cannot be
written is one line and its own exit code (issue 18, "Noise and silence in the logs")."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.homesync_server import RunningServer
from tests.support.repositories import corrupt_file_data
from tests.support.trees import make_home


def settled_log(server: RunningServer, seconds: float = 1.0) -> list[str]:
    """Return the server's log lines once it had time to finish what was sent."""
    time.sleep(seconds)
    return server.log.read_text().splitlines()


def noise(lines: list[str]) -> list[str]:
    return [line for line in lines if " ERROR " in line or "Traceback" in line or line.startswith(" ")]


def test_normal_sessions_leave_no_error_in_the_server_log(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "notes.txt").write_text("a")
    laptop.enroll_and_back_up(fresh_server, "joe", "Quiet")
    for _ in range(4):  # the reset raced the server's last packets: about one session in four
        laptop.ok("backup")
        laptop.ok("archives")
    assert noise(settled_log(fresh_server)) == []


def test_a_health_check_leaves_at_most_one_short_line(fresh_server):
    host, port = fresh_server.address.rsplit(":", 1)
    before = len(settled_log(fresh_server, 0.5))
    socket.create_connection((host, int(port))).close()  # a load balancer's TCP check
    with socket.create_connection((host, int(port))) as http:  # something that is not SSH
        http.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
    with socket.create_connection((host, int(port))) as reader:  # reads the banner, then leaves
        assert reader.recv(64).startswith(b"SSH-2.0-")
    lines = settled_log(fresh_server)[before:]
    assert noise(lines) == [] and len(lines) <= 3, lines
    assert all(len(line) < 200 for line in lines), lines


@pytest.mark.parametrize("command", [("report", "--format", "html"), ("metrics",), ("drill", "--all")])
def test_an_output_file_that_cannot_be_written_is_one_line_and_exit_22(fresh_server, command):
    closed = Path(tempfile.mkdtemp(prefix="hs-closed-"))  # root's, 0700: the server's user may not enter
    try:
        for output in (closed / "x.html", Path("/nonexistent-dir/x.html")):
            done = fresh_server.cli(*command, "--output", str(output))
            assert done.returncode == 22, done.stderr
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
            assert f"cannot write {output}: " in done.stderr and "internal error" not in done.stderr
    finally:
        os.rmdir(closed)


def test_a_failed_restore_is_audited_with_its_reason(fresh_server, computer_factory):
    laptop = computer_factory()
    make_home(laptop.home, seed=31, files=60, total_bytes=2 << 20)
    laptop.enroll_and_back_up(fresh_server, "joe", "Broken Restore")
    machine_id = laptop.machine_id()
    corrupt_file_data(fresh_server, machine_id, 4096)
    target = laptop.home / "restore-here"
    done = laptop.run("restore", "--machine", "Broken Restore", "--target", str(target))
    assert done.returncode in (20, 21), done.stderr
    rows = fresh_server.index_rows(f"SELECT action, actor, detail FROM audit WHERE machine_id = '{machine_id}' "
                                   "AND action LIKE 'restore%'")
    assert [(action, actor) for action, actor, _ in rows] == [("restore_failed", "joe")], rows
    detail = json.loads(rows[0][2])
    assert detail["result"] == "failed" and detail["error"] and detail["error"] in done.stderr
    assert any("WARNING homesync_server.handlers: restore of " + machine_id in line for line in settled_log(fresh_server))
