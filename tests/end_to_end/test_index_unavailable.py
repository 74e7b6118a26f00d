"""The index on PostgreSQL, stopped while the server runs: the computer is told in one
line (`index unavailable …`, exit 33), nothing is half-written, and once PostgreSQL is
back the server answers again by itself (no restart)."""

from __future__ import annotations

import pytest

from tests.support.homesync_server import start_server
from tests.support.postgres import Cluster
from tests.support.processes import chown_tree, remove


@pytest.fixture
def cluster():
    cluster = Cluster()  # its own: stopping the test run's shared one would disturb other servers
    yield cluster
    cluster.close()


def test_a_stopped_database_is_one_clear_line_and_the_server_recovers(cluster, computer_factory):
    server = start_server(index_url=cluster.new_database())
    try:
        laptop = computer_factory()
        (laptop.home / "a").write_text("a")
        chown_tree(laptop.home)
        assert laptop.enroll_and_back_up(server, "joe", "Joe's Laptop")["result"] == "success"
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
