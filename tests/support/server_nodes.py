"""Several `homesync-server serve` nodes for tests (issue 14): one data directory
(repository root, host key, escrow key, server.toml) and one PostgreSQL index shared by
N nodes on loopback ports, each with a node id of its own ($HOMESYNC_NODE_ID) and a
short heartbeat. The first node is started as tests/support/homesync_server starts one
server; the others are more `serve` processes on the same directory."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass

import pytest

from tests.support.homesync_server import PASSWORDS, RunningServer, start_server
from tests.support.processes import free_port, remove

HEARTBEAT = 0.5  # seconds between a node's heartbeats in tests (the default is 5)
DEAD_AFTER = 3   # missed heartbeats: a killed node counts as dead 1.5 s after its last one


@dataclass
class ServerNodes:
    """N running nodes of one service; nodes[i] is a RunningServer (its address, its
    `serve` process, its log)."""

    nodes: list[RunningServer]
    index_url: str

    def __getitem__(self, number: int) -> RunningServer:
        return self.nodes[number]

    @property
    def fingerprint(self) -> str:
        return self.nodes[0].fingerprint

    def node_id(self, number: int) -> str:
        return self.nodes[number].env["HOMESYNC_NODE_ID"]

    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def cli(self, *args: str, input: str | None = None, node: int = 0):
        """Run `homesync-server ARGS` on node number node (as its node id)."""
        from tests.support.processes import VENV_BIN, run_as_user
        server = self.nodes[node]
        return run_as_user([str(VENV_BIN / "homesync-server"), *args, "--data", str(server.data)],
                           server.data.parent, input=input, HOMESYNC_NODE_ID=self.node_id(node))

    def listed(self) -> dict[str, dict]:
        """Return `homesync-server nodes --json` by node id."""
        done = self.cli("nodes", "--json")
        assert done.returncode == 0, done.stderr
        return {n["id"]: n for n in json.loads(done.stdout)}

    def wait_listed(self, predicate, timeout: float, what: str) -> dict[str, dict]:
        """Return `nodes --json` (by id) once predicate holds for it; fail after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.listed()
            if predicate(listed):
                return listed
            assert time.monotonic() < deadline, f"{what}: not within {timeout} s: {listed}"
            time.sleep(0.2)

    def kill(self, number: int) -> None:
        """SIGKILL node number and every process it started (its borg serve processes):
        the node's machine died, nothing of it cleans up."""
        process = self.nodes[number].process
        victims = _descendants(process.pid) + [process.pid]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)

    def stop(self, number: int) -> int:
        return self.nodes[number].stop()

    def close(self) -> None:
        for node in self.nodes:
            if node.process and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
                # the second signal ends the drain; another SIGTERM could merge with the first one
                node.process.send_signal(signal.SIGINT)
        for node in self.nodes:
            if node.process:
                node.process.wait(timeout=60)
        remove(self.nodes[0].data.parent)


def _descendants(pid: int) -> list[int]:
    """Return the pids of every live descendant of pid, children first."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found[::-1]


LEASE = 2.0     # seconds a job's lease lasts unrenewed (the default is 60)


def node_section(heartbeat: float = HEARTBEAT, dead_after: int = DEAD_AFTER, drain_seconds: float = 60.0,
                 lease_seconds: float = LEASE) -> str:
    return (f"[node]\nheartbeat_seconds = {heartbeat}\ndead_after = {dead_after}\n"
            f"drain_seconds = {drain_seconds}\nlease_seconds = {lease_seconds}\n")


def start_nodes(index_url: str, count: int = 3, users: dict[str, str] = PASSWORDS, drain_seconds: float = 60.0,
                more: str = "") -> ServerNodes:
    """Start count nodes (node-a, node-b, …) sharing one data directory and the index at
    index_url; more: TOML tables for their server.toml. The caller closes them."""
    names = [f"node-{chr(ord('a') + n)}" for n in range(count)]
    first = start_server(users, index_url=index_url, sections=node_section(drain_seconds=drain_seconds) + more,
                         env={"HOMESYNC_NODE_ID": names[0]}, name=names[0])
    nodes = [first]
    try:
        for name in names[1:]:
            node = RunningServer(first.data, f"127.0.0.1:{free_port()}", first.fingerprint,
                                 env={"HOMESYNC_NODE_ID": name}, index_url=index_url, name=name)
            node.start()
            nodes.append(node)
    except BaseException:
        ServerNodes(nodes, index_url).close()
        raise
    return ServerNodes(nodes, index_url)


@pytest.fixture
def server_nodes(postgres_url):
    """Three running nodes on one data directory and one PostgreSQL index (a test's own)."""
    made = start_nodes(postgres_url)
    yield made
    made.close()


@pytest.fixture(scope="module")
def server_nodes_module(postgres_cluster):
    """Three running nodes shared by a test module (its tests must not disturb each other)."""
    made = start_nodes(postgres_cluster.new_database())
    yield made
    made.close()
