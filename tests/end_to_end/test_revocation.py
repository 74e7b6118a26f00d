"""Revocation (issue 11, item 10c): adopting or retiring a machine closes its old key's
open sessions; a restore grant is one-off (ended by the restore's report, by a transfer
or retirement; a restore through the CLI leaves none behind), kept in the index so a
restart neither forgets nor revives it."""

from __future__ import annotations

import time

import pytest

from homesync import transport
from homesync.errors import AuthenticationError, ConnectionFailedError
from tests.support.homesync_server import PASSWORDS


def _rpc_dies(rpc, seconds: float = 10) -> bool:
    """Return whether an open RPC session stops working within seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            rpc.call("whoami")
        except ConnectionFailedError:
            return True
        time.sleep(0.2)
    return False


def _password_rpc(server, user="joe"):
    session = transport.Session.connect(server.address, server.fingerprint, user, password=PASSWORDS[user])
    return session, session.rpc()


def _grant(rpc, machine_id):
    key = transport.new_key().pkey
    rpc.call("restore.grant", machine_id=machine_id, public_key=transport.public_key_line(key))
    return key


def _connect(server, machine_id, key):
    return transport.Session.connect(server.address, server.fingerprint, machine_id, key=key)


def _backed_up(server, computer, name: str):
    """Enroll computer as name with one backup; return it, its machine id and machine key."""
    (computer.home / "a.txt").write_text("a")
    computer.enroll_and_back_up(server, "joe", name)
    return computer, computer.machine_id(), transport.load_key(computer.home / ".local/share/homesync/machine_key")


def test_adopt_closes_the_old_keys_open_session(fresh_server, computer_factory):
    old, machine_id, old_key = _backed_up(fresh_server, computer_factory(), "Old One")
    stolen = _connect(fresh_server, machine_id, old_key)
    rpc = stolen.rpc()
    assert rpc.call("whoami")["kind"] == "machine"
    old.throw_away()
    new = computer_factory()
    new.json("restore", "--machine", "Old One", "--adopt", *new.remote_args(fresh_server, "joe"),
             input=PASSWORDS["joe"] + "\n")
    try:
        assert _rpc_dies(rpc), "the old key's session still works after adoption"
    finally:
        stolen.close()
    with pytest.raises(AuthenticationError), _connect(fresh_server, machine_id, old_key) as s:
        s.rpc().call("whoami")  # the old key logs in only to be told why it may do nothing


def test_a_restore_grant_is_one_off_and_kept_in_the_index(fresh_server, computer_factory):
    laptop, machine_id, _ = _backed_up(fresh_server, computer_factory(), "Granted")
    session, rpc = _password_rpc(fresh_server)
    with session:
        reported = _grant(rpc, machine_id)
    fresh_server.stop()
    fresh_server.start()
    with _connect(fresh_server, machine_id, reported) as s:
        assert s.rpc().call("whoami")["kind"] == "restore", "a grant survives a restart"
    session, rpc = _password_rpc(fresh_server)
    with session:
        rpc.call("restore.report", machine_id=machine_id, archive="x", hostname="new", files=1, bytes=1,
                 seconds=1.0, result="success")
        with pytest.raises(AuthenticationError):
            _connect(fresh_server, machine_id, reported)
        transferred = _grant(rpc, machine_id)

    open_restore = _connect(fresh_server, machine_id, transferred)
    restore_rpc = open_restore.rpc()
    assert restore_rpc.call("whoami")["kind"] == "restore"
    done = fresh_server.cli("machine", "transfer", "--machine", machine_id, "--to", "ann")
    assert done.returncode == 0, done.stderr
    try:
        assert _rpc_dies(restore_rpc), "a restore session survives the machine's transfer"
    finally:
        open_restore.close()
    with pytest.raises(AuthenticationError):
        _connect(fresh_server, machine_id, transferred)
    fresh_server.stop()
    fresh_server.start()
    with pytest.raises(AuthenticationError):
        _connect(fresh_server, machine_id, transferred)


def _grants(server, repository_id: str) -> int:
    return server.index_rows(f"SELECT COUNT(*) FROM restore_grants WHERE repository_id = '{repository_id}'")[0][0]


def test_retire_closes_the_machines_sessions_and_ends_its_grants(fresh_server, computer_factory):
    laptop, machine_id, machine_key = _backed_up(fresh_server, computer_factory(), "Retiring")
    session, rpc = _password_rpc(fresh_server)
    with session:
        granted = _grant(rpc, machine_id)
    as_machine, as_restore = _connect(fresh_server, machine_id, machine_key), _connect(fresh_server, machine_id, granted)
    machine_rpc, restore_rpc = as_machine.rpc(), as_restore.rpc()
    assert machine_rpc.call("whoami")["kind"] == "machine" and restore_rpc.call("whoami")["kind"] == "restore"
    done = fresh_server.cli("machine", "retire", "--machine", machine_id)
    assert done.returncode == 0, done.stderr
    try:
        assert _rpc_dies(machine_rpc), "the machine key's session survives retirement"
        assert _rpc_dies(restore_rpc), "a restore session survives retirement"
    finally:
        as_machine.close()
        as_restore.close()
    assert _grants(fresh_server, machine_id) == 0
    with pytest.raises(AuthenticationError):
        _connect(fresh_server, machine_id, granted)


def test_a_restore_through_the_cli_leaves_no_key_behind(fresh_server, computer_factory):
    laptop, machine_id, _ = _backed_up(fresh_server, computer_factory(), "One-off")
    new = computer_factory()
    restored = new.json("restore", "--machine", "One-off", *new.remote_args(fresh_server, "joe"),
                        input=PASSWORDS["joe"] + "\n")
    assert (new.home / "a.txt").read_text() == "a", restored
    assert fresh_server.index_rows(f"SELECT COUNT(*) FROM audit WHERE action = 'passphrase_release' "
                                   f"AND machine_id = '{machine_id}'")[0][0] >= 1  # it did take a grant
    assert _grants(fresh_server, machine_id) == 0, "the restore's one-off key still opens the repository"
