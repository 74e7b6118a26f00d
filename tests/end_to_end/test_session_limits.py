"""Limits after and before login (issue 11, items 6 and 7): one command per channel, a
cap of sessions per login, small windows until borg serve runs, refused sessions that
carry nothing, and unauthenticated connections that are closed and bounded."""

from __future__ import annotations

import os
import socket
import threading
import time

import paramiko
import pytest

from homesync import protocol, transport
from tests.support.homesync_client import backed_up_machine
from tests.support.homesync_server import PASSWORDS, start_server
from tests.support.processes import UNPRIVILEGED, free_port, private_dir, remove

SMALL_WINDOW = 1 << 20
MAX_CHANNELS_TRIED = 41


@pytest.fixture(scope="module")
def machine(homesync_server):
    """An enrolled computer with one backup: (server, machine id, machine key)."""
    with backed_up_machine(homesync_server, "Limits") as enrolled:
        yield enrolled


def _login(server, machine_id, key) -> transport.Session:
    return transport.Session.connect(server.address, server.fingerprint, machine_id, key=key)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _whoami(channel) -> dict:
    channel.sendall(protocol.encode_frame(protocol.request("whoami", {})))
    return protocol.unwrap(protocol.read_frame(transport.exact_reader(channel)))


def test_a_channel_runs_one_command_only(machine):
    server, machine_id, key = machine
    with _login(server, machine_id, key) as session:
        channel = session.exec(protocol.RPC_COMMAND, timeout=30)
        with pytest.raises(paramiko.SSHException):
            channel.exec_command("borg serve")
        # (paramiko closes its end of a channel whose request failed)
        assert _whoami(session.exec(protocol.RPC_COMMAND, timeout=30))["kind"] == "machine"


def test_sessions_beyond_the_cap_for_one_login_are_refused(machine):
    server, machine_id, key = machine
    with _login(server, machine_id, key) as session:
        first = [session.exec(protocol.RPC_COMMAND, timeout=30) for _ in range(8)]
        assert _whoami(first[0])["machine_id"] == machine_id
        excess = session.exec(protocol.RPC_COMMAND, timeout=30)
        assert excess.status_event.wait(10) and excess.recv_exit_status() == 1, "the excess session is refused"
        assert b"too many sessions" in excess.recv_stderr(4096)
        assert _whoami(first[0])["machine_id"] == machine_id, "the sessions within the cap still work"
        first[-1].close()
        time.sleep(0.5)
        assert _whoami(session.exec(protocol.RPC_COMMAND, timeout=30))["kind"] == "machine", "a freed place is reused"


def test_a_channel_that_never_runs_a_command_gets_a_small_window(machine):
    server, machine_id, key = machine
    with _login(server, machine_id, key) as session:
        idle = [session.transport.open_session(timeout=10) for _ in range(8)]
        assert all(c.out_window_size <= SMALL_WINDOW for c in idle)
        before = _rss_kib(server.process.pid)
        for channel in idle:
            channel.settimeout(0.5)
            try:
                for _ in range(32 * 4):  # up to 32 MiB each, 256 MiB in all
                    channel.sendall(b"\0" * (256 << 10))
            except socket.timeout:
                pass
        time.sleep(0.5)
        grown = _rss_kib(server.process.pid) - before
        print(f"server RSS grew by {grown} KiB after pushing into 8 idle channels")
        assert grown < 16 << 10
        borg = session.exec("borg serve", timeout=30)
        deadline = time.monotonic() + 5
        while borg.out_window_size < 16 << 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert borg.out_window_size >= 16 << 20, "borg serve's channel gets the large window"


def test_a_client_that_ignores_the_window_is_disconnected(machine):
    server, machine_id, key = machine
    from paramiko.common import cMSG_CHANNEL_DATA
    from paramiko.message import Message
    with _login(server, machine_id, key) as session:
        idle = session.transport.open_session(timeout=10)
        before = _rss_kib(server.process.pid)
        for _ in range(64 * 8):  # 64 MiB in 128 KiB packets, never waiting for the window
            if not session.transport.is_active():
                break
            m = Message()
            m.add_byte(cMSG_CHANNEL_DATA)
            m.add_int(idle.remote_chanid)
            m.add_string(b"\0" * (128 << 10))
            try:
                session.transport._send_user_message(m)
            except (OSError, EOFError, paramiko.SSHException):
                break
        deadline = time.monotonic() + 5
        while session.transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not session.transport.is_active(), "the server keeps a client that overran a window"
        assert _rss_kib(server.process.pid) - before < 16 << 10


def test_a_refused_session_is_answered_and_closed_and_carries_nothing():
    secrets = private_dir("hs-ldap-secret-")
    (secrets / "password").write_text("service-pw\n")
    os.chown(secrets / "password", UNPRIVILEGED, UNPRIVILEGED)
    os.chmod(secrets / "password", 0o600)
    identity = f'''[identity]
backend = "ldap"
urls = ["ldap://127.0.0.1:{free_port()}"]
bind_dn = "cn=homesync,dc=example,dc=org"
bind_password_file = "{secrets / 'password'}"
user_base = "ou=people,dc=example,dc=org"
timeout = 1.0
'''
    server = start_server(users={}, identity=identity)  # the directory's port is closed
    try:
        with transport.Session.connect(server.address, server.fingerprint, "joe", password="anything") as session:
            channel = session.exec(protocol.RPC_COMMAND, timeout=10)
            assert channel.out_window_size <= SMALL_WINDOW
            assert channel.status_event.wait(10) and channel.recv_exit_status() == 1
            assert b"directory" in channel.recv_stderr(4096).lower()
            deadline = time.monotonic() + 3
            while not channel.closed and time.monotonic() < deadline:
                time.sleep(0.05)
            assert channel.closed, "the server closes a refused session without waiting for the client"
            time.sleep(1.5)
            idle = session.transport.open_session(timeout=10)
            assert idle.out_window_size <= SMALL_WINDOW
            with pytest.raises(paramiko.ChannelException):
                session.transport.open_session(timeout=10)  # a refused login holds one channel at most
    finally:
        server.stop()
        remove(server.data.parent)
        remove(secrets)


def _kex_only(address: str) -> paramiko.Transport:
    """Return a transport that finished key exchange and never authenticates."""
    host, port = address.rsplit(":", 1)
    t = paramiko.Transport(socket.create_connection((host, int(port)), timeout=10))
    t.start_client(timeout=10)
    return t


def test_an_unauthenticated_connection_is_closed_at_the_deadline():
    server = start_server(settings="preauth_seconds = 2")
    try:
        t = _kex_only(server.address)
        started = time.monotonic()
        while t.is_active() and time.monotonic() - started < 15:
            time.sleep(0.05)
        held = time.monotonic() - started
        print(f"an unauthenticated connection was closed after {held:.2f} s")
        assert not t.is_active() and held < 4
    finally:
        server.stop()
        remove(server.data.parent)


def test_a_hundred_idle_connections_are_bounded_and_a_backup_still_works(fresh_server, computer_factory):
    idle = []
    try:
        for _ in range(100):
            try:
                idle.append(_kex_only(fresh_server.address))
            except (paramiko.SSHException, OSError, EOFError):
                pass
        time.sleep(1)
        held = sum(t.is_active() for t in idle)
        print(f"{held} of 100 unauthenticated connections still held")
        assert held <= 16
        laptop = computer_factory()
        (laptop.home / "b.txt").write_text("b")
        assert laptop.enroll_and_back_up(fresh_server, "joe", "Busy")["result"] == "success"
    finally:
        for t in idle:
            t.close()
    assert os.path.exists(fresh_server.data)


def test_sessions_beyond_the_servers_cap_are_refused_whoever_asks():
    server = start_server(settings="max_sessions = 4")
    try:
        with backed_up_machine(server, "Capped") as (_, machine_id, key), _login(server, machine_id, key) as machine:
            held = [machine.exec(protocol.RPC_COMMAND, timeout=30) for _ in range(4)]
            assert _whoami(held[0])["machine_id"] == machine_id
            with transport.Session.connect(server.address, server.fingerprint, "ann",
                                           password=PASSWORDS["ann"]) as other:
                excess = other.exec(protocol.RPC_COMMAND, timeout=30)
                assert excess.status_event.wait(10) and excess.recv_exit_status() == 1, "beyond the server's cap"
                assert b"too many sessions on this server" in excess.recv_stderr(4096)
                held[-1].close()
                time.sleep(0.5)
                assert _whoami(other.exec(protocol.RPC_COMMAND, timeout=30))["kind"] == "user"
    finally:
        server.stop()
        remove(server.data.parent)


def _borg_serves(server_pid: int) -> int:
    """Return how many `borg serve` processes the server has started and not reaped."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        count += parent == server_pid and b"serve" in argv
    return count


def test_many_channels_with_several_execs_start_at_most_the_cap_of_borg_serves(machine):
    """The red-team run: 41 channels with several execs each made 42 borg serve processes."""
    server, machine_id, key = machine
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _borg_serves(server.process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sessions = [_login(server, machine_id, key) for _ in range(5)]
    try:
        opened = [_open_channels(session, MAX_CHANNELS_TRIED) for session in sessions]
        assert all(len(channels) <= 10 for channels in opened), [len(c) for c in opened]
        for channel in (c for channels in opened for c in channels):
            channel.exec_command("borg serve")
        time.sleep(2)
        again = 0
        for channel in (c for channels in opened for c in channels if not c.closed):
            for _ in range(2):
                try:
                    channel.exec_command("borg serve")
                    again += 1
                except paramiko.SSHException:
                    break
        time.sleep(1)
    finally:
        for session in sessions:
            session.close()
        stop.set()
        sampler.join()
    print(f"{sum(map(len, opened))} channels over 5 connections, {again} second execs accepted, "
          f"at most {peak[0]} borg serve processes at once")
    assert again == 0
    assert 1 <= peak[0] <= 8


def _open_channels(session, most: int) -> list:
    """Open up to most session channels on one connection; return those the server allowed."""
    channels = []
    for _ in range(most):
        try:
            channels.append(session.transport.open_session(timeout=10))
        except paramiko.ChannelException:
            break
    return channels
