"""A computer with several server addresses backs up through the first that answers, with
two real `homesync-server serve` nodes on one data directory: dead addresses before them
(a closed port, a blackholed one) are passed over in seconds, a node stopped between two
backups is replaced by the other, the address that answered last is tried first, and one
name with two addresses (resolved in a private mount namespace whose /etc/hosts lists
::1 and 127.0.0.1 for it) works as two addresses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from tests.support.homesync_server import RunningServer
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, free_port, user_env

ANSWERED = ".local/state/homesync/server-answered"


def _addresses(computer, *addresses: str) -> None:
    """Give config.toml these addresses (tried in turn) instead of the one it was enrolled with."""
    path = computer.home / ".config/homesync/config.toml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("address = ")]
    at = lines.index("[server]") + 1
    lines.insert(at, "addresses = [" + ", ".join(f'"{a}"' for a in addresses) + "]")
    path.write_text("\n".join(lines) + "\n")


def _second_node(server: RunningServer) -> RunningServer:
    """Start another `serve` on the same data directory (same host key, same index), a node
    of its own id (one with the first's id would be refused: a live node has it)."""
    node = RunningServer(server.data, f"127.0.0.1:{free_port()}", server.fingerprint, index_url=server.index_url,
                         env={"HOMESYNC_NODE_ID": "node-b"}, name="node-b")
    node.start()
    return node


def _blackhole(family: int, host: str, port: int = 0) -> tuple[socket.socket, socket.socket]:
    """Return a listener whose one-place accept queue is taken (connects to it hang), and what takes it."""
    listener = socket.socket(family)
    listener.bind((host, port))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname()[:2], timeout=2)
    return listener, filler


def _timed_backup(computer, *prefix: str) -> tuple[dict, float]:
    started = time.monotonic()
    if prefix:
        done = subprocess.run([*prefix, str(VENV_BIN / "homesync"), "backup", "--json"], capture_output=True,
                              text=True, timeout=300, env=user_env(computer.home), cwd=computer.home)
    else:
        done = computer.run("backup", "--json")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), elapsed


def test_dead_addresses_and_a_stopped_node_are_passed_over(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "notes.txt").write_text("one\n")
    chown_tree(laptop.home)
    assert laptop.enroll(fresh_server, "joe", "two nodes").returncode == 0
    node_b = _second_node(fresh_server)
    hole, filler = _blackhole(socket.AF_INET, "127.0.0.1")
    closed = f"127.0.0.1:{free_port()}"
    try:
        baseline = _timed_backup(laptop)[1]  # through the address it was enrolled with: no probe at all
        _addresses(laptop, f"127.0.0.1:{hole.getsockname()[1]}", closed, fresh_server.address, node_b.address)
        first, through_a = _timed_backup(laptop)
        assert first["indexed"] and (laptop.home / ANSWERED).read_text().strip() == fresh_server.address
        again = _timed_backup(laptop)[1]  # the node that answered last first: no dead address tried
        assert fresh_server.stop() == 0
        second, through_b = _timed_backup(laptop)
        assert second["indexed"] and (laptop.home / ANSWERED).read_text().strip() == node_b.address
    finally:
        filler.close()
        hole.close()
        node_b.stop()
    print(f"backup through the enrolled address {baseline:.2f} s; blackholed + closed first {through_a:.2f} s; "
          f"the node that answered last first {again:.2f} s; node A stopped, through B {through_b:.2f} s")
    assert through_a < baseline + 6 and through_b < baseline + 6  # one 2 s probe timeout, a closed port ~0
    machine = laptop.machine_id()
    assert len(node_b.index_rows(f"SELECT name FROM archives WHERE machine_id = '{machine}'")) == 4


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace (unshare -m) needs root")
def test_a_name_with_two_addresses_is_tried_address_by_address(fresh_server, computer_factory, tmp_path):
    host, port = fresh_server.address.rsplit(":", 1)
    try:
        hole, filler = _blackhole(socket.AF_INET6, "::1", int(port))  # the name's first address: dead
    except OSError as e:
        pytest.fail(f"cannot listen on [::1]:{port} beside the server: {e}")
    hosts = tmp_path / "hosts"
    hosts.write_text("::1 nodes.test\n127.0.0.1 nodes.test localhost\n")
    hosts.chmod(0o644)
    tmp_path.chmod(0o755)
    in_namespace = ["unshare", "-m", "sh", "-c",
                    f'mount --bind {hosts} /etc/hosts && exec setpriv --reuid={UNPRIVILEGED} '
                    f'--regid={UNPRIVILEGED} --clear-groups "$@"', "sh"]
    laptop = computer_factory()
    (laptop.home / "notes.txt").write_text("one\n")
    chown_tree(laptop.home)
    try:
        assert laptop.enroll(fresh_server, "joe", "one name").returncode == 0
        _addresses(laptop, f"nodes.test:{port}")
        first, slow = _timed_backup(laptop, *in_namespace)
        assert first["indexed"] and (laptop.home / ANSWERED).read_text().strip() == fresh_server.address
        second, fast = _timed_backup(laptop, *in_namespace)
        assert second["indexed"]
    finally:
        filler.close()
        hole.close()
    print(f"nodes.test = [::1] (blackholed), 127.0.0.1: first backup {slow:.2f} s, "
          f"the next (127.0.0.1 tried first) {fast:.2f} s")
    assert open("/etc/hosts").read().find("nodes.test") < 0  # the machine's own hosts file was not touched
