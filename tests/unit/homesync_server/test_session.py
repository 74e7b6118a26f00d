"""The session logic without paramiko (issue 12, item 4): an RPC session over a plain
socket pair, refusals told on the session's own streams, and who a key logs in as,
against a real data directory and index."""

from __future__ import annotations

import select
import socket
import threading

import pytest

from homesync import protocol
from homesync.errors import NotFoundError, PermissionDeniedError, ProtocolError
from homesync.transport import exact_reader
from homesync_server import dispatch, session
from homesync_server.actions import setup
from homesync_server.config import Layout
from homesync_server.dispatch import MACHINE, REFUSED, USER, Principal
from homesync_server.index import event
from homesync_server.services import Services

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7qrrWKGWBOq0JgVqZyYVbDjmc0C8ZmHtH3FtkAhYyt"
MACHINE_ID = "0123456789abcdef"


class SocketChannel:
    """session.Channel over one end of a socket pair: what another front end would hand over."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.closed, self.stderr, self.exit_status = sock, False, b"", None

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def recv_ready(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def sendall_stderr(self, data: bytes) -> None:
        self.stderr += data

    def send_exit_status(self, status: int) -> None:
        self.exit_status = status

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def open_window(self) -> None:
        pass


@pytest.fixture
def services(tmp_path):
    layout = Layout(tmp_path / "data")
    setup.init(layout, "127.0.0.1:0")
    with Services.open(layout) as opened:
        opened.index.record_user("joe")
        opened.index.add_machine({"id": MACHINE_ID, "owner": "joe", "name": "Joe's Thinkpad", "hostname": "t",
                                  "public_key": KEY, "enrolled": 1.0}, "joe's thinkpad", event("enroll", "joe"))
        yield opened


def _session(services: Services, principal: Principal, action=dispatch.Rpc()):
    """Start a session on one end of a socket pair; return the client's end, the server's
    channel and the thread running the session."""
    client, server = socket.socketpair()
    channel = SocketChannel(server)
    thread = threading.Thread(target=session.run, args=(services, principal, "127.0.0.1", channel, action),
                              daemon=True)
    thread.start()
    client.settimeout(10)
    return client, channel, thread


def _call(client: socket.socket, op: str, args: dict):
    client.sendall(protocol.encode_frame(protocol.request(op, args)))
    return protocol.unwrap(protocol.read_frame(exact_reader(client)))


def test_an_rpc_session_runs_over_a_plain_pair_of_byte_streams(services):
    client, channel, thread = _session(services, Principal(USER, "joe"))
    assert _call(client, "whoami", {}) == {"user": "joe", "kind": USER, "machine_id": None, "display_name": ""}
    assert [m["name"] for m in _call(client, "machines.list", {})] == ["Joe's Thinkpad"]
    with pytest.raises(PermissionDeniedError):  # what the principal may not do is refused, the session goes on
        _call(client, "backup.report", {"name": "a", "start": 1.0, "end": 2.0, "files": 1, "original_size": 1,
                                        "compressed_size": 1, "deduplicated_size": 1, "result": "success"})
    with pytest.raises(NotFoundError):
        _call(client, "archives.list", {"machine_id": "f" * 16})
    client.shutdown(socket.SHUT_WR)  # the client ends: the session ends and closes its channel
    thread.join(10)
    assert not thread.is_alive() and channel.closed


def test_a_broken_frame_is_answered_once_then_the_session_ends(services):
    client, channel, thread = _session(services, Principal(MACHINE, "joe", machine_id=MACHINE_ID))
    client.sendall(protocol.encode_frame({"v": protocol.VERSION, "op": "rm -rf /", "args": {}}))
    with pytest.raises(ProtocolError):
        protocol.unwrap(protocol.read_frame(exact_reader(client)))
    thread.join(10)
    assert not thread.is_alive() and channel.closed and client.recv(1) == b""


def test_a_refusal_is_told_on_the_sessions_streams(services):
    client, server = socket.socketpair()
    channel = SocketChannel(server)
    client.settimeout(10)
    done = threading.Thread(target=session.refuse, args=(channel, PermissionDeniedError("no"), True))
    done.start()
    with pytest.raises(PermissionDeniedError):
        protocol.unwrap(protocol.read_frame(exact_reader(client)))
    client.close()
    done.join(10)
    assert channel.exit_status == 1 and channel.closed and b"no" in channel.stderr


def test_a_key_logs_in_as_its_machine_and_nothing_else(services):
    kind, b64 = KEY.split()
    principal, key = session.by_key(services, MACHINE_ID, kind, b64)
    assert (principal.kind, principal.user, principal.machine_id, key) == (MACHINE, "joe", MACHINE_ID, KEY)
    assert session.still_allowed(services, principal, key, touch=False)
    assert session.by_key(services, MACHINE_ID, kind, b64[:-4] + "AAAA") is None  # another key
    assert session.by_key(services, "f" * 16, kind, b64) is None  # another machine
    assert session.by_key(services, "joe", kind, b64) is None  # not a machine id
    assert session.by_key(services, MACHINE_ID, "ssh-rsa", b64) is None
    assert not session.still_allowed(services, principal, KEY.replace("AIG7", "AIG8"), touch=False)


def test_a_refused_principal_may_run_nothing():
    refused = Principal(REFUSED, "joe", error=PermissionDeniedError("directory down"))
    with pytest.raises(PermissionDeniedError, match="directory down"):
        dispatch.decide(refused, protocol.RPC_COMMAND)
