"""What clients claim, checked (issue 11, items 10a, 10b, 10d): absurd backup reports
refused, hostnames with control characters refused and never shown raw, and borg
errors relayed without the server's paths or argv."""

from __future__ import annotations

import sqlite3
import time

import msgpack
import pytest

from homesync import transport
from homesync.errors import UsageError
from tests.support.homesync_client import backed_up_machine
from tests.support.homesync_server import PASSWORDS


@pytest.fixture(scope="module")
def machine(homesync_server):
    """An enrolled computer with one backup: (server, machine id, machine key)."""
    with backed_up_machine(homesync_server, "Hostile") as enrolled:
        yield enrolled


def _report(**changes):
    now = time.time()
    args = {"name": "2026-01-01T00:00:00.000Z", "start": now - 10, "end": now, "files": 1, "original_size": 1,
            "compressed_size": 1, "deduplicated_size": 1, "result": "success"}
    return dict(args, **changes)


@pytest.mark.parametrize("changes", [
    {"start": -1e308, "end": 1e308}, {"start": float("nan")}, {"end": float("inf")},
    {"start": time.time(), "end": time.time() - 3600}, {"start": 1.0, "end": 2.0},
    {"start": time.time() + 86400 * 365, "end": time.time() + 86400 * 366}, {"files": 1 << 63},
    {"original_size": (1 << 64) - 1}])
def test_an_absurd_backup_report_is_refused_and_reports_still_work(machine, changes):
    server, machine_id, key = machine
    with transport.Session.connect(server.address, server.fingerprint, machine_id, key=key) as session:
        with pytest.raises(UsageError):
            session.rpc().call("backup.report", **_report(**changes))
    for form in ([], ["--format", "csv"], ["--json"]):
        done = server.cli("report", *form)
        assert done.returncode in (0, 1, 2), (form, done.returncode, done.stderr)


@pytest.mark.parametrize("hostname", ["evil\x1b[2J", "a\rb", "a\nfake-row  joe", "x" * 300, "bidi\u202egnp"])
def test_a_hostname_with_control_characters_is_refused(homesync_server, hostname):
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, "joe",
                                   password=PASSWORDS["joe"]) as session:
        with pytest.raises(UsageError):
            session.rpc().call("machine.enroll", name="Forged", hostname=hostname, passphrase=b"p" * 40,
                               public_key=transport.public_key_line(transport.new_key().pkey))
    with homesync_server.index() as index:
        assert "Forged" not in [m["name"] for m in index.machines()]


def test_the_machines_table_shows_control_characters_escaped(machine):
    server, machine_id, _ = machine
    db = sqlite3.connect(server.data / "index.sqlite")  # a row written before hostnames were checked
    with db:
        db.execute("UPDATE machines SET hostname = ?, name = ? WHERE id = ?",
                   ("h\x1b[2J\r\nffffffffffffffff  ann  Forged", "Hostile\u202e\u200b", machine_id))
    db.close()
    done = server.cli("machines")
    assert done.returncode == 0, done.stderr
    assert not any(c in done.stdout for c in "\x1b\r\u202e\u200b")
    with server.index() as index:
        assert len(done.stdout.splitlines()) == 1 + len(index.machine_ids())
    assert "\\x1b" in done.stdout and "\\u202e" in done.stdout


def _borg_rpc(channel, *calls) -> bytes:
    """Send borg RPC calls on an exec'd `borg serve` channel; return all it sent back."""
    channel.sendall(b"".join(msgpack.packb({b"i": i, b"m": m, b"a": a}) for i, (m, a) in enumerate(calls, 1)))
    channel.shutdown_write()
    received, deadline = b"", time.monotonic() + 30
    channel.settimeout(5)
    while time.monotonic() < deadline:
        data = channel.recv(1 << 16)
        while channel.recv_stderr_ready():
            received += channel.recv_stderr(1 << 16)
        if not data:
            break
        received += data
    while channel.recv_stderr_ready():
        received += channel.recv_stderr(1 << 16)
    return received


def test_borg_errors_reach_the_client_without_server_paths_or_argv(machine):
    server, machine_id, key = machine
    hello = {b"client_data": {b"client_version": (1, 4, 5)}}
    opening = {b"path": b"/./0000000000000000", b"create": False, b"lock_wait": 1.0, b"lock": True,
               b"exclusive": False, b"append_only": False}
    with transport.Session.connect(server.address, server.fingerprint, machine_id, key=key) as session:
        received = _borg_rpc(session.exec("borg serve", timeout=30),
                             ("negotiate", hello), ("open", opening),
                             ("open", dict(opening, path=f"/./{machine_id}".encode())),
                             ("get", {b"id": "not bytes"}))
    assert b"PathNotAllowed" in received and b"exception_class" in received
    data_dir = str(server.data).encode()
    assert data_dir not in received, received
    assert b"restrict-to-repository" not in received and b"sys.argv" not in received
    assert b"Traceback" not in received
