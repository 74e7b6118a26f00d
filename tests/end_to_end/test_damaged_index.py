"""A damaged or emptied index (issue 18): commands name the damaged file and what to
do (exit 19), `reindex --force` keeps it aside and rebuilds from the repositories,
and an index that lost its machines is rebuilt by `serve` before it listens, so no
agent is ever told that its key was refused."""

from __future__ import annotations

import json
import os

from tests.end_to_end.test_backbone import NOT_BACKED_UP
from tests.support.processes import VENV_BIN, run_as_user
from tests.support.repositories import enrolled_with_backups
from tests.support.trees import assert_same_tree, snapshot

INDEX_DAMAGED = 19


def _one_clear_line(done, index) -> None:
    assert done.returncode == INDEX_DAMAGED, (done.returncode, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert str(index) in line and "homesync-server reindex --force" in line and "internal error" not in line


def _serve_once(server):
    """Run `serve` as the server's user; it must exit by itself (a damaged index)."""
    return run_as_user([str(VENV_BIN / "homesync-server"), "serve", "--data", str(server.data),
                        "--listen", server.address], server.data.parent, timeout=60)


def _without_wal(server) -> None:
    for suffix in ("-wal", "-shm"):
        (server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)


def test_an_overwritten_index_is_named_and_reindex_force_rebuilds_it(fresh_server, computer_factory):
    server = fresh_server
    joe_id, joe, (joe_backup,) = enrolled_with_backups(server, computer_factory, "joe", "Joe's Damaged", 43)
    expected = snapshot(joe.home, exclude=NOT_BACKED_UP)
    assert server.stop() == 0
    index = server.data / "index.sqlite"
    with open(index, "r+b") as f:  # written in place: the file stays the server user's
        f.write(os.urandom(100))

    _one_clear_line(server.cli("machines"), index)
    _one_clear_line(_serve_once(server), index)
    unforced = server.cli("reindex")
    assert unforced.returncode == INDEX_DAMAGED and "--force" in unforced.stderr

    rebuilt = server.cli_json("reindex", "--force")
    assert [m["id"] for m in rebuilt["machines"]] == [joe_id] and rebuilt["problems"] == []
    assert rebuilt["set_aside"].startswith("index.sqlite.damaged-")
    assert (server.data / rebuilt["set_aside"]).read_bytes()[:100] != index.read_bytes()[:100]
    assert [(m["id"], m["archives"]) for m in server.cli_json("machines")] == [(joe_id, 1)]
    verdict = server.cli_json("audit", "verify")  # a new chain: the old one is in the file set aside
    assert verdict["intact"] is True
    (detail,) = [json.loads(d) for a, d in server.index_rows("SELECT action, detail FROM audit") if a == "reindex"]
    assert detail["set_aside"] == rebuilt["set_aside"] and detail["reason"] == "damaged"

    server.start()
    assert joe.json("backup")["indexed"] is True
    new = computer_factory()
    restored = new.json("restore", "--machine", "Joe's Damaged", "--archive", joe_backup["name"],
                        *new.remote_args(server, "joe"), input="joe-secret-pw\n")
    assert restored["archive"] == joe_backup["name"]
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)


def test_an_emptied_index_is_rebuilt_by_serve_and_agents_go_on(fresh_server, computer_factory):
    server = fresh_server
    joe_id, joe, _ = enrolled_with_backups(server, computer_factory, "joe", "Joe's Emptied", 44)
    ann_id, ann, _ = enrolled_with_backups(server, computer_factory, "ann", "Ann's Emptied", 45)
    assert server.stop() == 0
    _without_wal(server)
    os.truncate(server.data / "index.sqlite", 0)

    server.start()
    for computer in (joe, ann):
        done = computer.run("backup", "--json")
        assert done.returncode == 0 and "enroll" not in done.stderr, done.stderr
        assert json.loads(done.stdout)["indexed"] is True
    log = server.log.read_text()
    assert "indexed 2 machines from their repositories" in log, log
    machines = {m["id"]: m["archives"] for m in server.cli_json("machines")}
    assert machines == {joe_id: 2, ann_id: 2}
    (detail,) = [json.loads(d) for a, d in server.index_rows("SELECT action, detail FROM audit") if a == "reindex"]
    assert detail["automatic"] is True and detail["machines"] == 2


def _checkpoint_as_server_user(server) -> None:
    """Move everything the WAL holds into the index file (as a checkpoint would), so that
    pages overwritten in the file are what the running server reads next."""
    script = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
              "assert db.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0] == 0")
    done = run_as_user([str(VENV_BIN / "python"), "-c", script, str(server.data / "index.sqlite")],
                       server.data.parent)
    assert done.returncode == 0, done.stderr


def test_an_index_damaged_under_a_running_server_is_named_to_agents_and_in_the_log(fresh_server,
                                                                                  computer_factory):
    """Pages overwritten while serve runs: agents and password logins get one clear line
    (exit 32, nothing about keys or enrolling), the log says what to do without a
    traceback, serve goes on running, and after reindex --force backups go on."""
    server = fresh_server
    joe_id, joe, _ = enrolled_with_backups(server, computer_factory, "joe", "Joe's Torn", 46)
    _checkpoint_as_server_user(server)
    index = server.data / "index.sqlite"
    with open(index, "r+b") as f:  # every page but the header
        for offset in range(4096, index.stat().st_size, 4096):
            f.seek(offset)
            f.write(os.urandom(4096))

    for done in (joe.run("backup"), joe.run("machines", "--password-stdin", input="joe-secret-pw\n")):
        assert done.returncode == 32, (done.returncode, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert "the backup server cannot read its index" in line and "admin" in line, line
        assert "enroll" not in line and "refused this computer's key" not in line and str(index) not in line
    assert server.process.poll() is None, "serve must go on running"
    log = server.log.read_text()
    assert "Traceback" not in log, log
    (named,) = [line for line in log.splitlines() if " ERROR " in line]  # once, not per session
    assert f"the index {index} is damaged" in named and "reindex --force" in named, named

    assert server.stop() == 0
    assert server.cli_json("reindex", "--force")["problems"] == []
    server.start()
    assert joe.json("backup")["indexed"] is True
