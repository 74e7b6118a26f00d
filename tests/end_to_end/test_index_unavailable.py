"""The index on PostgreSQL, stopped while the server runs: the computer is told in one
line (`index unavailable …`, exit 33), nothing is half-written, and once PostgreSQL is
back the server answers again by itself (no restart); a backup that finished meanwhile
waits in the agent's queue and is indexed once PostgreSQL is back."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.support.homesync_client import background_done
from tests.support.homesync_server import start_server
from tests.support.postgres import Cluster
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, remove, user_env


@pytest.fixture
def cluster():
    cluster = Cluster()  # its own: stopping the test run's shared one would disturb other servers
    yield cluster
    cluster.close()


def _backed_up(server, computer_factory):
    """Return a computer of joe's with one backup through server."""
    laptop = computer_factory()
    (laptop.home / "a").write_text("a")
    chown_tree(laptop.home)
    assert laptop.enroll_and_back_up(server, "joe", "Joe's Laptop")["result"] == "success"
    return laptop

def test_a_stopped_database_is_one_clear_line_and_the_server_recovers(cluster, computer_factory):
    server = start_server(index_url=cluster.new_database())
    try:
        laptop = _backed_up(server, computer_factory)
        archives_before = server.cli_json("machines")[0]["archives"]
        cluster.stop()
        try:
            refused = laptop.run("backup")
            assert refused.returncode == 33, refused.stderr
            lines = [line for line in refused.stderr.splitlines() if line.strip()]
            assert any("index unavailable" in line for line in lines), refused.stderr
            assert len([line for line in lines if "index unavailable" in line]) == 1
        finally:
            cluster.start()
        assert server.process.poll() is None  # serve went on
        again = laptop.json("backup")
        assert again["result"] == "success"
        assert server.cli_json("machines")[0]["archives"] == archives_before + 1
        assert server.cli("audit", "verify").returncode == 0
    finally:
        if server.process.poll() is None:
            server.stop()
        remove(server.data.parent)


def _slow_backup(laptop) -> subprocess.Popen:
    """Start `homesync backup --json` in the background, its upload held to 2 MiB/s."""
    return subprocess.Popen([str(VENV_BIN / "homesync"), "backup", "--json"], env=user_env(laptop.home),
                            cwd=laptop.home, user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_backup_that_finishes_while_the_database_is_down_is_reported_from_the_queue(cluster, computer_factory):
    """PostgreSQL stops while borg create runs: the repository on disk stays writable, so
    the backup completes; its report cannot be indexed and waits in the agent's queue;
    once PostgreSQL is back, the next backup delivers it, and the index lists the
    archive with the times and result the agent reported."""
    server = start_server(index_url=cluster.new_database())
    try:
        laptop = _backed_up(server, computer_factory)
        background_done(laptop, server)
        machine_id = laptop.machine_id()
        repo = server.data / "repos" / machine_id
        config = laptop.home / ".config/homesync/config.toml"
        config.write_text(config.read_text().replace("[backup]\n", "[backup]\nupload_ratelimit = 2048\n", 1))  # KiB/s
        (laptop.home / "video.raw").write_bytes(os.urandom(24 << 20))  # about 12 s at 2 MiB/s
        chown_tree(laptop.home)
        queue = laptop.home / ".local/state/homesync/unreported.json"

        backup = _slow_backup(laptop)
        _wait_for(lambda: (repo / "lock.exclusive").exists() or backup.poll() is not None, "borg to open the repository")
        assert backup.poll() is None, backup.communicate()
        cluster.stop()
        try:
            out, err = backup.communicate(timeout=240)
            assert backup.returncode == 0, err
            made = json.loads(out)
            assert made["result"] == "success" and made["indexed"] is False, made
            queued = json.loads(queue.read_text())
            assert [r["name"] for r in queued] == [made["name"]] and queued[0]["result"] == "success"
            assert server.process.poll() is None
        finally:
            cluster.start()

        (laptop.home / "video.raw").unlink()
        again = laptop.json("backup")
        assert again["result"] == "success" and again["indexed"] is True
        assert json.loads(queue.read_text()) == []
        listed = {a["name"]: a for a in laptop.json("archives")}
        assert made["name"] in listed, listed
        indexed = listed[made["name"]]
        assert indexed["result"] == "success"
        assert (indexed["start"], indexed["end"]) == (made["start"], made["end"])
        assert indexed["original_size"] == made["original_size"] and indexed["files"] == made["files"]
        machine = server.cli_json("machines")[0]
        assert machine["archives"] == 3  # none flagged: the queued archive counts as a recovery point
        assert server.cli("audit", "verify").returncode == 0
    finally:
        if server.process.poll() is None:
            server.stop()
        remove(server.data.parent)
