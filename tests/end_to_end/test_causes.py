"""The failures users meet are named in one line with what to do: the server's disk full,
repository files the server cannot read, this computer's disk full during a restore."""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager

from tests.end_to_end.test_history import checked, wait_for
from tests.support.processes import UNPRIVILEGED, chown_tree


@contextmanager
def small_disk(path, size: str = "20m"):
    """Mount a tmpfs of size on path (owned by the unprivileged user) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        os.chown(path, UNPRIVILEGED, UNPRIVILEGED)
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)


def _grow(path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_a_full_server_disk_is_named_and_the_next_backup_works_once_there_is_room(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "small.txt").write_text("small")
    with small_disk(fresh_server.data / "repos"):
        laptop.enroll_and_back_up(fresh_server, "joe", "Full server")
        with open(laptop.home / "big.bin", "wb") as f:
            f.write(os.urandom(40 << 20))
        chown_tree(laptop.home)
        done = laptop.run("backup")
        assert done.returncode == 25, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "disk is full" in done.stderr and "backup server" in done.stderr, done.stderr
        assert "internal server error" not in done.stderr and "SSH_ORIGINAL_COMMAND" not in done.stderr
        repo = fresh_server.data / "repos" / laptop.machine_id()
        assert not (repo / "lock.exclusive").exists(), "repository left locked"
        assert "disk is full" in fresh_server.log.read_text()
        _grow(fresh_server.data / "repos", "200m")
        assert laptop.json("backup")["result"] in ("success", "warning")


def test_repository_files_the_server_cannot_read_are_named(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "small.txt").write_text("small")
    laptop.enroll_and_back_up(fresh_server, "joe", "Root-owned")
    repo = fresh_server.data / "repos" / laptop.machine_id()
    # the post-session check is done with the repository (no check of it pending)
    assert wait_for(lambda: checked(fresh_server, laptop.machine_id()), 30), "the post-session check never ran"
    # as after an admin ran borg as root in the repository: files that are root's alone
    changed = [p for p in repo.iterdir() if p.name.startswith(("index.", "hints.", "integrity."))]
    for path in changed:
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
    (laptop.home / "more.txt").write_text("more")
    chown_tree(laptop.home)
    done = laptop.run("backup")
    assert done.returncode == 23, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "may not read or write some files of this computer's repository" in done.stderr, done.stderr
    assert "Local Exception" not in done.stderr
    assert "may not read or write" in fresh_server.log.read_text()
    for path in changed:
        os.chown(path, UNPRIVILEGED, UNPRIVILEGED)
    assert laptop.json("backup")["result"] in ("success", "warning")


def test_the_old_computer_of_an_adopted_machine_is_told_by_whom_and_when(fresh_server, computer_factory):
    from tests.support.homesync_server import PASSWORDS
    old = computer_factory()
    (old.home / "a.txt").write_text("a")
    old.enroll_and_back_up(fresh_server, "joe", "Joe's Old Laptop")
    new = computer_factory()
    new.json("restore", "--machine", "Joe's Old Laptop", "--adopt", *new.remote_args(fresh_server, "joe"),
             input=PASSWORDS["joe"] + "\n")
    with fresh_server.index() as index:
        (hostname,) = [m["hostname"] for m in index.machines()]
    done = old.run("backup")
    assert done.returncode == 18, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert f"replaced by the computer {hostname!r}" in done.stderr and today in done.stderr, done.stderr
    assert "Joe's Old Laptop" in done.stderr and "enroll it as a new machine" in done.stderr
    assert "borg create failed" not in done.stderr


def test_a_retired_machine_is_told_it_was_retired_and_when(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(fresh_server, "joe", "Joe's Retired Laptop")
    assert fresh_server.cli("machine", "retire", "--machine", laptop.machine_id()).returncode == 0
    done = laptop.run("backup")
    assert done.returncode == 24, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    today = time.strftime("%Y-%m-%d", time.gmtime())
    name = "Joe's Retired Laptop"
    assert f"{name!r} was retired by an admin on {today}" in done.stderr, done.stderr


def test_a_full_restore_target_is_named_and_nothing_local_is_lost(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "Documents").mkdir()
    (laptop.home / "Documents/letter.txt").write_text("dear ann\n")
    with open(laptop.home / "video.raw", "wb") as f:
        f.write(os.urandom(30 << 20))
    laptop.enroll_and_back_up(fresh_server, "joe", "Full target")
    with small_disk(laptop.home.parent / f"{laptop.home.name}-target") as target:
        (target / "mine.txt").write_text("my own file\n")
        os.chown(target / "mine.txt", UNPRIVILEGED, UNPRIVILEGED)
        done = laptop.run("restore", "--machine", "Full target", "--target", str(target))
        assert done.returncode == 25, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "this computer's disk is full" in done.stderr and str(target) in done.stderr, done.stderr
        assert "do not match" not in done.stderr
        assert (target / "mine.txt").read_text() == "my own file\n"
        assert not [p for p in target.iterdir() if p.name.startswith(".homesync-restore-")]
        _grow(target, "100m")
        restored = laptop.json("restore", "--machine", "Full target", "--target", str(target))
        assert (target / "Documents/letter.txt").read_text() == "dear ann\n", restored
        assert (target / "mine.txt").read_text() == "my own file\n"
