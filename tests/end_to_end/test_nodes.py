"""Stateless nodes (issue 14): three `serve` nodes on one data directory and one
PostgreSQL index, any of them serving any machine. Enroll through A, back up through B,
restore through C bit for bit onto a computer never enrolled; failed logins spread over
A and B count together and block on C; a restore grant issued by A works on B; audit
events written by all three at once, then `audit verify` passes."""

from __future__ import annotations

import json
import threading

import pytest

from homesync import transport
from homesync.errors import AuthenticationError
from tests.support.homesync_client import Computer, wait_for_keeping
from tests.support.homesync_server import PASSWORDS
from tests.support.password_logins import ACCOUNT_ATTEMPTS, BLOCKED, guess
from tests.support.processes import chown_tree
from tests.support.server_nodes import server_nodes_module  # noqa: F401
from tests.support.trees import assert_same_tree, make_home, snapshot

@pytest.fixture
def server_nodes(server_nodes_module):  # noqa: F811
    """The module's three nodes: ann's account is the one blocked, joe's stays usable."""
    return server_nodes_module


NOT_BACKED_UP = (".config/homesync", ".local/share/homesync", ".local/state/homesync", ".cache",
                 ".local/share/Trash")


def _through(computer: Computer, address: str) -> None:
    """Point the computer's config.toml at another node (as an admin or the policy would)."""
    config = computer.home / ".config/homesync/config.toml"
    text = config.read_text()
    old = text.split('address = "', 1)[1].split('"', 1)[0]
    config.write_text(text.replace(f'address = "{old}"', f'address = "{address}"', 1))


def _remote(nodes, node: int, user: str = "joe") -> list[str]:
    return ["--server", nodes[node].address, "--user", user, "--fingerprint", nodes.fingerprint, "--password-stdin"]


def test_enroll_via_a_back_up_via_b_restore_via_c_bit_for_bit(server_nodes, computer_factory):
    laptop = computer_factory()
    make_home(laptop.home, seed=1401, files=120, total_bytes=2 << 20)
    chown_tree(laptop.home)
    assert laptop.enroll(server_nodes[0], "joe", "Stateless").returncode == 0
    _through(laptop, server_nodes[1].address)
    backup = laptop.json("backup")
    assert backup["result"] == "success" and backup["indexed"] is True
    expected = snapshot(laptop.home, exclude=NOT_BACKED_UP)
    laptop.throw_away()

    new = computer_factory()
    restored = new.json("restore", "--machine", "Stateless", *_remote(server_nodes, 2), input=PASSWORDS["joe"] + "\n")
    assert restored["archive"] == backup["name"]
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
    sessions = {node.name: node.log.read_text() for node in server_nodes.nodes}
    assert "borg serve for" in sessions["node-b"] and "borg serve for" in sessions["node-c"]


def test_failed_logins_over_a_and_b_count_together_and_block_on_c(server_nodes, computer_factory):
    for n in range(ACCOUNT_ATTEMPTS):
        assert not guess(server_nodes[n % 2], "ann", f"wrong-{n}")  # A, B, A, B, A
    computer = computer_factory()
    done = computer.run("machines", *_remote(server_nodes, 2, "ann"), input=PASSWORDS["ann"] + "\n")
    assert done.returncode == 17, (done.returncode, done.stderr)  # the right password, on the third node
    assert BLOCKED.match(done.stderr.strip()), done.stderr
    listed = server_nodes.cli("login", "list", "--json", node=2)
    assert listed.returncode == 0
    assert [r["blocks"] for r in json.loads(listed.stdout) if r["key"] == "account" and r["name"] == "ann"] == [1]


def test_a_restore_grant_issued_by_a_works_on_b(server_nodes, computer_factory):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(server_nodes[0], "joe", "Granted")
    machine_id = laptop.machine_id()
    key = transport.new_key().pkey
    with transport.Session.connect(server_nodes[0].address, server_nodes.fingerprint, "joe",
                                   password=PASSWORDS["joe"]) as session:
        session.rpc().call("restore.grant", machine_id=machine_id, public_key=transport.public_key_line(key))
    with transport.Session.connect(server_nodes[1].address, server_nodes.fingerprint, machine_id, key=key) as s:
        assert s.rpc().call("whoami")["kind"] == "restore"
    with pytest.raises(AuthenticationError), \
            transport.Session.connect(server_nodes[2].address, server_nodes.fingerprint, machine_id,
                                      key=transport.new_key().pkey):
        pass  # a key nobody granted opens nothing, on any node
    wait_for_keeping(laptop)


def test_audit_events_written_by_every_node_at_once_keep_one_chain(server_nodes, computer_factory):
    """Each node appends events for the sessions it serves, all at once: failed logins
    (login_failed) and enrollments, through three nodes in parallel threads."""
    computers = [computer_factory() for _ in range(3)]
    start = threading.Barrier(len(server_nodes.nodes) * 2)
    failures: list[str] = []

    def load(node: int) -> None:
        start.wait()
        for n in range(4):
            guess(server_nodes[node], "mallory", f"wrong-{node}-{n}")

    def enroll(node: int) -> None:
        start.wait()
        done = computers[node].enroll(server_nodes[node], "joe", f"Audited {node}")
        if done.returncode != 0:
            failures.append(done.stderr)

    def counted() -> dict[str, int]:
        rows = server_nodes[0].index_rows("SELECT action, COUNT(*) FROM audit GROUP BY action")
        return {action: n for action, n in rows}

    before = counted()
    threads = [threading.Thread(target=f, args=(n,)) for n in range(3) for f in (load, enroll)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    after = counted()
    assert after["enroll"] - before.get("enroll", 0) == 3
    assert after["login_failed"] - before.get("login_failed", 0) >= 3
    verified = server_nodes.cli("audit", "verify", "--json", node=1)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["intact"] is True


def test_a_second_node_with_a_live_nodes_id_is_refused(server_nodes):
    """Two nodes with one id would run borg with one host id, and borg breaks a lock of its
    own host id whose pid it does not see: the second is refused before it listens."""
    from tests.support.processes import VENV_BIN, free_port, run_as_user
    before = server_nodes.listed()["node-a"]
    started = run_as_user([str(VENV_BIN / "homesync-server"), "serve", "--listen", f"127.0.0.1:{free_port()}",
                           "--data", str(server_nodes[0].data)], server_nodes[0].data.parent, timeout=60,
                          HOMESYNC_NODE_ID="node-a")
    assert started.returncode == 3, started.stderr
    assert "node id 'node-a' is in use by a live node (pid %d" % server_nodes[0].process.pid in started.stderr
    after = server_nodes.listed()["node-a"]
    assert (after["pid"], after["state"], after["started"]) == (before["pid"], "serving", before["started"])
