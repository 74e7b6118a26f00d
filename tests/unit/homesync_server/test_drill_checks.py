"""A drill's comparisons, on trees built here: counting like `borg create` (hard links
once), hashing a sample against borg's listing, refusing to start without room, and
removing a restored tree that holds read-only directories."""

from __future__ import annotations

import hashlib
import os
import signal
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from homesync.errors import HomesyncError
from homesync_server.actions import drill
from homesync_server.actions.drill_checks import compare_hashes, compare_tally, sample_files, scratch_tally
from homesync_server.config import Layout
from tests.support.processes import VENV_BIN, chown_tree, private_dir, remove, run_as_user


def _tree(root: Path) -> None:
    (root / "d").mkdir()
    (root / "a").write_bytes(b"hello\n")
    os.link(root / "a", root / "d" / "a-again")
    (root / "d" / "c").write_bytes(b"x" * 1000)
    (root / "s").symlink_to("a")
    (root / b"latin1-caf\xe9".decode("utf-8", "surrogateescape")).write_bytes(b"1")
    os.mkfifo(root / "f")


def test_the_tally_counts_inodes_and_their_bytes_like_borg_create(tmp_path):
    _tree(tmp_path)
    tally = scratch_tally(tmp_path)
    assert (tally.files, tally.bytes) == (3, 6 + 1000 + 1)  # borg: nfiles 3, original_size 1007
    assert len(tally.paths) == 2 and "d/c" in tally.paths  # the non-UTF-8 name counts but is not sampled
    assert compare_tally(tally, {"files": 3, "original_size": 1007}, "r::a") == []
    assert compare_tally(tally, {"files": 5, "original_size": 1007}, "r::a") == [
        "r::a: 5 files were reported at backup time, the restore holds 3 (2 missing)"]
    assert sample_files(tally.paths, 1)[0] in tally.paths and sorted(sample_files(tally.paths)) == sorted(tally.paths)


def test_hashes_are_compared_with_what_borg_lists(tmp_path):
    _tree(tmp_path)
    good = hashlib.sha256(b"x" * 1000).hexdigest()
    listed = [{"path": "d/c", "sha256": good, "source": ""}, {"path": "d/a-again", "sha256": "", "source": "a"}]
    assert compare_hashes(tmp_path, ["d/c", "d/a-again"], listed, "r::a") == (1, [])
    listed[0]["sha256"] = "0" * 64
    compared, problems = compare_hashes(tmp_path, ["d/c", "a"], listed, "r::a")
    assert compared == 1 and problems[0].startswith("r::a: 'd/c' restored with SHA-256 ")
    assert problems[1] == "r::a: 'a' was restored but borg does not list it"


def test_a_drill_refuses_to_start_without_room(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(drill.shutil, "disk_usage", lambda path: usage(10 << 30, 0, 100 << 20))
    drill._require_space(scratch, 30 << 20)
    with pytest.raises(HomesyncError, match="not enough free space in .*scratch to restore: 109.1 MB needed"):
        drill._require_space(scratch, 40 << 20)


def test_a_restored_tree_with_read_only_directories_is_removed():
    base = private_dir("hs-drill-unit-")  # as root, permissions would not be tested at all
    root = base / "drill-x"
    (root / "locked" / "deeper").mkdir(parents=True)
    (root / "locked" / "deeper" / "f").write_text("x")
    (root / "link").symlink_to(base)
    chown_tree(base)
    (root / "locked" / "deeper").chmod(0o500)
    (root / "locked").chmod(0o000)
    script = ("from pathlib import Path; from homesync_server.actions import drill; "
              f"drill.remove_tree(Path({str(root)!r}))")
    try:
        done = run_as_user([str(VENV_BIN / "python"), "-c", script], base)
        assert done.returncode == 0, done.stderr
        assert not root.exists() and base.exists()
    finally:
        remove(base)


class _Interrupted(Exception):
    pass


def _interrupt(signum, frame):
    raise _Interrupted()


def test_an_interrupted_borg_run_stops_borg_before_going_on(tmp_path):
    from homesync import borg
    from homesync_server.escrowed import Repository
    services = SimpleNamespace(repos=SimpleNamespace(environment=lambda: borg.BorgEnvironment()),
                               layout=Layout(tmp_path))
    repo = Repository(services, "0" * 16, b"secret")
    pid_file = tmp_path / "pid"
    previous = signal.signal(signal.SIGALRM, _interrupt)  # as Ctrl-C would, but not KeyboardInterrupt
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(_Interrupted):
            repo.run(("/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"))
    finally:
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
