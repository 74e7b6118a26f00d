"""Isolation: one user can never reach another user's machines, a machine key reaches
only its own repository, and nothing the client asks for reaches a shell."""

from __future__ import annotations


import paramiko
import pytest

from homesync import borg, protocol, shim, transport
from homesync.errors import AuthenticationError, BorgError, NotFoundError, PermissionDeniedError
from tests.support.homesync_server import PASSWORDS


@pytest.fixture(scope="module")
def two_users(homesync_server, tmp_path_factory):
    """joe and ann, each with an enrolled computer and one backup."""
    from tests.support.homesync_client import Computer
    from tests.support.processes import private_dir, remove
    computers = {}
    for user, machine in (("joe", "Joe's Thinkpad"), ("ann", "Ann's Laptop")):
        computer = Computer(private_dir(f"hs-{user}-"))
        (computer.home / "secret.txt").write_text(f"{user}'s secret")
        computer.enroll_and_back_up(homesync_server, user, machine)
        computers[user] = (computer, computer.machine_id())
    yield computers
    for computer, _ in computers.values():
        remove(computer.home)


def _key(computer) -> paramiko.PKey:
    return transport.load_key(computer.home / ".local/share/homesync/machine_key")


def _user_rpc(server, user):
    session = transport.Session.connect(server.address, server.fingerprint, user, password=PASSWORDS[user])
    return session, session.rpc()


def test_a_user_cannot_list_restore_or_obtain_the_passphrase_of_anothers_machine(homesync_server, two_users):
    joe_id = two_users["joe"][1]
    session, rpc = _user_rpc(homesync_server, "ann")
    with session:
        assert joe_id not in {m["id"] for m in rpc.call("machines.list")}
        with pytest.raises(NotFoundError):
            rpc.call("archives.list", machine_id=joe_id)
        with pytest.raises(NotFoundError):
            rpc.call("restore.grant", machine_id=joe_id, public_key=transport.public_key_line(transport.new_key().pkey))
    releases = homesync_server.index_rows(
        f"SELECT COUNT(*) FROM audit WHERE action = 'passphrase_release' AND machine_id = '{joe_id}'")
    assert releases == [(0,)]


def test_the_cli_refuses_to_restore_another_users_machine(homesync_server, two_users, computer_factory):
    thief = computer_factory()
    done = thief.run("restore", "--machine", "Joe's Thinkpad", *thief.remote_args(homesync_server, "ann"),
                     input=PASSWORDS["ann"] + "\n")
    assert done.returncode == 10 and "no computer named" in done.stderr
    assert not (thief.home / "secret.txt").exists()


def test_a_machine_key_reaches_only_its_own_repository(homesync_server, two_users, tmp_path):
    ann, ann_id = two_users["ann"]
    joe_id = two_users["joe"][1]
    key_file = ann.home / ".local/share/homesync/machine_key"
    environment = borg.BorgEnvironment(
        base_dir=tmp_path, rsh=shim.rsh_command(),
        extra={shim.ENV_FINGERPRINT: homesync_server.fingerprint, shim.ENV_KEY_FILE: str(key_file)})
    host, port = homesync_server.address.rsplit(":", 1)
    passphrase = (ann.home / ".local/share/homesync/passphrase").read_bytes()
    for path in (f"/./{joe_id}", str(homesync_server.data / "repos" / joe_id), "/./", "/./../repos/" + joe_id):
        with pytest.raises(BorgError):
            borg.run_borg(borg.make_list_archives_command(f"ssh://{ann_id}@{host}:{port}{path}"),
                          environment, passphrase, timeout=60)
    own = borg.run_borg(borg.make_list_archives_command(f"ssh://{ann_id}@{host}:{port}/./{ann_id}"),
                        environment, passphrase, timeout=60)
    assert len(own.json["archives"]) == 1
    # and the key does not log in as joe's machine at all
    with pytest.raises(AuthenticationError):
        transport.Session.connect(homesync_server.address, homesync_server.fingerprint, joe_id, key=_key(ann))


def test_a_machine_key_cannot_obtain_passphrases_or_enroll(homesync_server, two_users):
    ann, ann_id = two_users["ann"]
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, ann_id,
                                   key=_key(ann)) as session:
        rpc = session.rpc()
        with pytest.raises(PermissionDeniedError):
            rpc.call("restore.grant", machine_id=ann_id, public_key=transport.public_key_line(transport.new_key().pkey))
        with pytest.raises(PermissionDeniedError):
            rpc.call("machine.enroll", name="x", hostname="h", public_key="ssh-ed25519 AAAA", passphrase=b"p" * 40)
        assert [m["id"] for m in rpc.call("machines.list")] == [ann_id]


@pytest.mark.parametrize("command", [
    "sh -c 'touch {marker}'", "borg serve; touch {marker}", "touch {marker}", "borg;serve",
    "/bin/sh", "homesync-rpc; touch {marker}", "borg-serve", ""])
def test_nothing_the_client_asks_for_reaches_a_shell(homesync_server, two_users, tmp_path, command):
    ann, ann_id = two_users["ann"]
    marker = tmp_path / "pwned"
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, ann_id,
                                   key=_key(ann)) as session:
        channel = session.exec(command.format(marker=marker), timeout=30)
        assert channel.recv_exit_status() == 1
        assert b"runs only homesync and borg sessions" in channel.recv_stderr(4096)
    assert not marker.exists()


def test_borg_serve_runs_the_servers_argv_never_the_clients(homesync_server, two_users, tmp_path):
    ann, ann_id = two_users["ann"]
    marker = tmp_path / "pwned"
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, ann_id,
                                   key=_key(ann)) as session:
        channel = session.exec(f"borg serve --restrict-to-path / --umask 000 && touch {marker}", timeout=30)
        channel.shutdown_write()  # borg serve ends at the end of its input
        assert channel.recv_exit_status() == 0
    assert not marker.exists()


def test_a_password_login_cannot_open_a_repository(homesync_server, two_users):
    session, _ = _user_rpc(homesync_server, "joe")
    with session:
        channel = session.exec("borg serve --restrict-to-repository /", timeout=30)
        assert channel.recv_exit_status() == 1


def test_oversized_and_malformed_rpc_frames_are_refused(homesync_server, two_users):
    session, _ = _user_rpc(homesync_server, "joe")
    with session:
        for payload in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x03abc",
                        protocol.encode_frame({"v": 1, "op": "machines.list", "args": {"x": 1}}),
                        protocol.encode_frame({"v": 1, "op": "os.system", "args": {}})):
            channel = session.exec(protocol.RPC_COMMAND, timeout=30)
            channel.sendall(payload)
            response = protocol.read_frame(lambda n: channel.makefile("rb").read(n))
            assert response["ok"] is False and response["kind"] == "protocol"
            channel.close()
