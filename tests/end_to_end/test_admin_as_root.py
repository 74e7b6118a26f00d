"""Admin commands run as root on a data directory that belongs to the service user:
they switch to that user, so they leave nothing root-owned (in the repositories, the
index, the borg cache or the drill's scratch area) and the machine's next backup still
succeeds; a user who is neither root nor the owner is refused with one line saying how."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from homesync_server import config as server_config
from homesync_server.config import Layout
from tests.support.homesync_server import RunningServer
from tests.support.processes import VENV_BIN, user_env
from tests.support.repositories import enrolled_with_backups

WRONG_USER_EXIT = 26


def as_root(server: RunningServer, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run `homesync-server ARGS --data DIR` as root (the test's own user)."""
    assert os.geteuid() == 0, "these tests need root, as an admin would be"
    env = user_env(Path("/root"), USER="root", LOGNAME="root")
    return subprocess.run([str(VENV_BIN / "homesync-server"), *args, "--data", str(server.data)], input=input,
                          capture_output=True, text=True, timeout=300, env=env, cwd="/")


def root_owned(*trees: Path) -> list[str]:
    """Return every path under the trees that root owns."""
    found = []
    for tree in trees:
        if not tree.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in [""] + dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.lstat(path).st_uid == 0:
                    found.append(path)
    return found


def test_drill_hold_prune_and_reindex_as_root_leave_nothing_root_owned(fresh_server, computer_factory):
    server = fresh_server
    machine_id, computer, _ = enrolled_with_backups(server, computer_factory, "joe", "Joe's Rooted", 61)
    scratch = server_config.load(Layout(server.data)).drill.scratch

    for args in (("hold", "add", "--machine", machine_id, "--all", "--reason", "case 9"),
                 ("drill", "--machine", machine_id, "--json"),
                 ("prune", "--machine", machine_id, "--json"),
                 ("hold", "remove", "--machine", machine_id, "--all")):
        done = as_root(server, *args)
        assert done.returncode == 0, f"{args}: {done.stderr}"
    assert json.loads(as_root(server, "drill", "--machine", machine_id, "--json").stdout)[0]["result"] == "passed"
    assert server.stop() == 0
    rebuilt = as_root(server, "reindex", "--force", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert root_owned(server.data, scratch) == []

    server.start()
    computer.ok("backup")
    assert len(server.cli_json("machines")[0:1]) == 1
    assert root_owned(server.data, scratch) == []


def test_a_user_who_is_not_the_owner_is_told_how_to_run_it(fresh_server):
    from tests.support.processes import run_as_user

    done = run_as_user([str(VENV_BIN / "homesync-server"), "hold", "add", "--machine", "m" * 26, "--all",
                        "--data", str(fresh_server.data)], Path("/"), uid=12345)
    assert done.returncode == WRONG_USER_EXIT, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "belongs to nobody" in line and "sudo -u nobody homesync-server" in line
