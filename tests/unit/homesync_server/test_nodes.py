"""Several server nodes (issue 14), the pure parts: the [node] section and a node's id,
when a node counts as dead, and who holds a repository's lock as borg's files say."""

from __future__ import annotations

import json
import os
import re

import pytest

from homesync import borg
from homesync.errors import ConfigError
from homesync_server import config as server_config, nodes

DEFAULT = server_config.render_default("127.0.0.1:2222")


def _load(tmp_path, text: str):
    layout = server_config.Layout(tmp_path)
    layout.config_file.write_text(text)
    return server_config.load(layout)


def test_the_node_section_defaults_and_its_id(tmp_path, monkeypatch):
    monkeypatch.delenv(server_config.NODE_VARIABLE, raising=False)
    config = _load(tmp_path, DEFAULT)
    assert config.node == server_config.NodeConfig() and config.node.drain_seconds == 60
    assert server_config.node_id(config) == os.uname().nodename.split(".")[0]
    config = _load(tmp_path, DEFAULT + '\n[node]\nid = "node-7"\nheartbeat_seconds = 0.5\nlease_seconds = 2\n')
    assert server_config.node_id(config) == "node-7" and config.node.heartbeat_seconds == 0.5
    monkeypatch.setenv(server_config.NODE_VARIABLE, "node-8")
    assert server_config.node_id(config) == "node-8"
    monkeypatch.setenv(server_config.NODE_VARIABLE, "a/b")
    with pytest.raises(ConfigError, match="node id 'a/b' is not usable"):
        server_config.node_id(config)


@pytest.mark.parametrize("section, complaint", [
    ('id = "../x"', "[node] id must be letters"),
    ("dead_after = 1", "[node] dead_after must be at least 2"),
    ("heartbeat_seconds = 0", "[node] heartbeat_seconds and lease_seconds must be positive"),
    ("drain_seconds = -1", "[node] drain_seconds must be a number (0 or more)"),
    ("speed = 3", "[node] unknown key 'speed'"),
])
def test_a_bad_node_section_is_refused(tmp_path, section, complaint):
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        _load(tmp_path, DEFAULT + f"\n[node]\n{section}\n")


def _row(heartbeat: float, state: str = "serving") -> dict:
    return {"id": "n", "state": state, "heartbeat": heartbeat, "heartbeat_seconds": 5.0}


def test_a_node_is_dead_after_its_missed_heartbeats_unless_it_stopped():
    assert not nodes.is_dead(_row(100.0), now=115.0, dead_after=3)
    assert nodes.is_dead(_row(100.0), now=115.1, dead_after=3)
    assert not nodes.is_dead(_row(100.0, "stopped"), now=10_000.0, dead_after=3)
    assert nodes.is_dead(_row(100.0, "draining"), now=200.0, dead_after=3)
    [shown] = nodes.described([_row(100.0)], now=112.0, dead_after=3)
    assert shown["age"] == 12.0 and shown["dead"] is False


def test_lock_holders_are_read_from_borgs_lock_files(tmp_path):
    assert borg.lock_holders(tmp_path) == set()
    (tmp_path / "lock.exclusive").mkdir()
    (tmp_path / "lock.exclusive" / "node-a.example.org.4242-0").touch()
    (tmp_path / "lock.roster").write_text(json.dumps({"exclusive": [["node-a.example.org", 4242, 0]],
                                                      "shared": [["node-b", 7, 0]]}))
    assert borg.lock_holders(tmp_path) == {("node-a.example.org", 4242, 0), ("node-b", 7, 0)}
    (tmp_path / "lock.exclusive" / "garbage").touch()
    assert ("?", 0, 0) in borg.lock_holders(tmp_path)  # never taken for a dead node's


def test_the_break_lock_command():
    assert borg.make_break_lock_command("/r")[1:] == ("break-lock", "--log-json", "/r")


def test_a_job_lease_held_elsewhere_is_exit_34_naming_the_node(tmp_path):
    from types import SimpleNamespace

    from homesync.errors import JobRunningError
    from homesync_server.index_store import open_url

    index = open_url(f"sqlite://{tmp_path / 'index.sqlite'}")
    try:
        config = SimpleNamespace(node=server_config.NodeConfig(lease_seconds=30))
        here, there = (SimpleNamespace(index=index, node_id=n, config=config) for n in ("node-a", "node-b"))
        with nodes.job_lease(here, "drill", "drills are"):
            with pytest.raises(JobRunningError, match="drills are already running on node node-a") as caught:
                with nodes.job_lease(there, "drill", "drills are"):
                    pass
            assert caught.value.exit_code == 34
            assert [lease["node"] for lease in index.leases()] == ["node-a"]
        assert index.leases() == []  # released at the end
        with nodes.job_lease(there, "drill", "drills are"):
            assert [lease["node"] for lease in index.leases()] == ["node-b"]
    finally:
        index.close()


def _index(tmp_path):
    from homesync_server.index_store import open_url
    return open_url(f"sqlite://{tmp_path / 'index.sqlite'}")


def _node_row(node_id: str, heartbeat: float, state: str = "serving", interval: float = 0.1,
              boot: str = "another machine's boot", pid: int = 4242) -> dict:
    return {"id": node_id, "address": "127.0.0.1:2222", "version": "0", "state": state, "sessions": 0, "pid": pid,
            "started": heartbeat, "heartbeat": heartbeat, "heartbeat_seconds": interval, "boot": boot}


def test_a_node_id_a_live_node_has_is_refused_a_dead_or_stopped_ones_row_is_taken_over(tmp_path):
    """A live node of this machine with the id is refused at once: test_nodes.py."""
    import subprocess
    import threading
    import time

    index = _index(tmp_path)
    try:
        nodes.refuse_a_live_twin(index, "node-a", dead_after=3)  # no row yet
        index.node_heartbeat(_node_row("node-a", time.time(), "stopped"))
        nodes.refuse_a_live_twin(index, "node-a", dead_after=3)  # stopped cleanly: at once
        index.node_heartbeat(_node_row("node-a", time.time() - 60))
        nodes.refuse_a_live_twin(index, "node-a", dead_after=3)  # long dead: at once
        index.node_heartbeat(_node_row("node-a", time.time()))  # killed a moment ago: its heartbeat stands still
        started = time.monotonic()
        nodes.refuse_a_live_twin(index, "node-a", dead_after=3, poll=0.02)
        assert 0.2 < time.monotonic() - started < 2  # until it counts dead: 3 x 0.1 s

        # written on this machine since its boot: its pid decides at once, here a process that is no server
        # (the crashed node's pid taken by another program)
        other = subprocess.Popen(["sleep", "30"])
        try:
            index.node_heartbeat(_node_row("node-a", time.time(), interval=60, boot=nodes.boot_id(), pid=other.pid))
            started = time.monotonic()
            nodes.refuse_a_live_twin(index, "node-a", dead_after=3)
            assert time.monotonic() - started < 1
        finally:
            other.kill()
            other.wait()

        done = threading.Event()

        def beating() -> None:  # another node with this id, alive
            while not done.wait(0.05):
                index.node_heartbeat(_node_row("node-a", time.time()))
        index.node_heartbeat(_node_row("node-a", time.time()))
        twin = threading.Thread(target=beating)
        twin.start()
        try:
            with pytest.raises(ConfigError, match="node id 'node-a' is in use by a live node \\(pid 4242") as caught:
                nodes.refuse_a_live_twin(index, "node-a", dead_after=3, poll=0.02)
            assert "[node] id" in caught.value.hint and caught.value.exit_code == 3
        finally:
            done.set()
            twin.join()
    finally:
        index.close()


def test_a_lock_is_broken_only_when_every_holder_is_a_node_the_index_shows_dead(tmp_path):
    """The refusals (a live holder, a holder that is no node, this node's own, a dead and
    a live one together); a dead node's lock broken: test_node_faults.py."""
    import shutil
    import time
    from types import SimpleNamespace

    from homesync_server import stale_locks

    index = _index(tmp_path)
    repository = tmp_path / "repo"
    try:
        now = time.time()
        index.node_heartbeat(_node_row("node-dead", now - 60))
        index.node_heartbeat(_node_row("node-live", now))
        services = SimpleNamespace(index=index, node_id="node-here", config=SimpleNamespace(
            node=server_config.NodeConfig(dead_after=3)), repos=None)  # repos: break-lock would fail loudly
        for holders in (["node-live"], ["admin-laptop"], ["node-here"], ["node-dead", "node-live"],
                        ["node-dead", "admin-laptop"]):
            repository.mkdir()
            (repository / "lock.exclusive").mkdir()
            (repository / "lock.roster").write_text(json.dumps(
                {"exclusive": [[holders[0], 7, 0]], "shared": [[h, 8, 0] for h in holders[1:]]}))
            (repository / "lock.exclusive" / f"{holders[0]}.7-0").touch()
            assert stale_locks.break_if_dead(services, repository, "m") is False, holders
            assert {h for h, _, _ in borg.lock_holders(repository)} == set(holders)
            assert index.audit_events(action="borg_lock_broken") == []
            shutil.rmtree(repository)
    finally:
        index.close()
