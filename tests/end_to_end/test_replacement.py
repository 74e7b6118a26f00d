"""Replacement hardware: adopt (the backup chain continues), clone, dry run, an
interrupted restore that resumes, and a restore by a different account."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from homesync import transport
from homesync.errors import AuthenticationError
from tests.support.homesync_server import PASSWORDS
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, user_env
from tests.support.trees import assert_same_tree, make_home, snapshot

NOT_BACKED_UP = (".config/homesync", ".local/share/homesync", ".local/state/homesync", ".cache",
                 ".local/share/Trash")


def backed_up_and_lost(server, computer_factory, name: str, **home) -> dict:
    """Back up a computer with a generated home (make_home's arguments) as `name`, then
    throw it away; return the snapshot of what its restore must give back."""
    old = computer_factory()
    make_home(old.home, **home)
    old.enroll_and_back_up(server, "joe", name)
    expected = snapshot(old.home, exclude=NOT_BACKED_UP)
    old.throw_away()
    return expected


def test_adopt_moves_the_identity_and_the_chain_continues(fresh_server, computer_factory):
    old = computer_factory()
    make_home(old.home, seed=11, files=200, total_bytes=6 << 20)
    first = old.enroll_and_back_up(fresh_server, "joe", "Joe's Thinkpad")
    machine_id = old.machine_id()
    old_key = transport.load_key(old.home / ".local/share/homesync/machine_key")
    expected = snapshot(old.home, exclude=NOT_BACKED_UP)
    old.throw_away()

    new = computer_factory()
    result = new.json("restore", "--machine", "Joe's Thinkpad", "--adopt", *new.remote_args(fresh_server, "joe"),
                      input=PASSWORDS["joe"] + "\n")
    assert result["adopted"] == "Joe's Thinkpad"
    assert new.machine_id() == machine_id
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
    with pytest.raises(AuthenticationError), \
            transport.Session.connect(fresh_server.address, fresh_server.fingerprint, machine_id, key=old_key) as s:
        s.rpc().call("whoami")  # the old key logs in only to be told why it may do nothing

    second = new.json("backup")
    assert second["result"] == "success"
    # same repository: the archive deduplicates against the old computer's backup
    assert second["deduplicated_size"] < first["deduplicated_size"] / 10
    assert [a["name"] for a in new.json("archives")] == [first["name"], second["name"]]
    with fresh_server.index() as index:
        assert index.machine_ids() == {machine_id}
        assert ("adopt", machine_id) in [(e["action"], e["machine_id"]) for e in index.audit_events()]


def test_clone_restores_then_enrolls_a_second_machine(fresh_server, computer_factory):
    old = computer_factory()
    (old.home / "notes.txt").write_text("shared start")
    old.enroll_and_back_up(fresh_server, "joe", "Joe's Workstation")
    clone = computer_factory()
    result = clone.json("restore", "--machine", "Joe's Workstation", "--as-new", "Joe's Laptop",
                        *clone.remote_args(fresh_server, "joe"), input=PASSWORDS["joe"] + "\n")
    assert result["enrolled_as"] == "Joe's Laptop"
    assert (clone.home / "notes.txt").read_text() == "shared start"
    names = {m["name"] for m in clone.json("machines", "--password-stdin", input=PASSWORDS["joe"] + "\n")}
    assert names == {"Joe's Workstation", "Joe's Laptop"}
    assert old.json("backup")["result"] == "success", "the old machine is untouched and keeps its key"
    assert clone.json("backup")["result"] == "success"
    assert clone.machine_id() != old.machine_id()


def test_a_dry_run_writes_nothing_and_says_what_would_happen(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "Documents").mkdir()
    (laptop.home / "Documents/a.txt").write_text("backup version")
    (laptop.home / "Documents/b.txt").write_text("same")
    laptop.enroll_and_back_up(fresh_server, "joe", "Dry")
    target = laptop.home / "elsewhere"
    (target / "Documents").mkdir(parents=True)
    (target / "Documents/a.txt").write_text("local version!")
    shutil.copy2(laptop.home / "Documents/b.txt", target / "Documents/b.txt")
    chown_tree(laptop.home)
    before = snapshot(target)
    preview = laptop.json("restore", "--machine", "Dry", "--target", str(target), "--dry-run")
    assert preview["dry_run"] is True and preview["kept_aside"] == ["Documents/a.txt"]
    assert preview["identical"] == 1 and preview["new_entries"] >= 1 and preview["estimated_seconds"] >= 0
    assert_same_tree(before, snapshot(target))
    missing = laptop.home / "not-yet"
    laptop.json("restore", "--machine", "Dry", "--target", str(missing), "--dry-run")
    assert not missing.exists()


def test_an_interrupted_restore_resumes_and_ends_bit_identical(fresh_server, computer_factory):
    expected = backed_up_and_lost(fresh_server, computer_factory, "Resume Me", seed=21, files=300,
                                  total_bytes=160 << 20)

    new = computer_factory()
    progress = new.home / ".local/state/homesync/restore-progress.json"
    argv = [str(VENV_BIN / "homesync"), "restore", "--machine", "Resume Me", "--json", *new.remote_args(fresh_server, "joe")]
    first = subprocess.Popen(argv, env=user_env(new.home), cwd=new.home, user=UNPRIVILEGED, group=UNPRIVILEGED,
                             extra_groups=[], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    first.stdin.write(f"{PASSWORDS['joe']}\n".encode())
    first.stdin.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        try:
            if "documents" in json.loads(progress.read_text())["done"]:
                break
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    assert first.poll() is None, "the restore ended before it could be interrupted"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    result = new.json("restore", "--machine", "Resume Me", *new.remote_args(fresh_server, "joe"),
                      input=PASSWORDS["joe"] + "\n")
    assert result["resumed"] == ["documents", "settings"] and result["phases"] == ["everything else"]
    assert not list(new.home.glob(".homesync-restore-*")) and not progress.exists()
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)


# What an extraction does to its staging directory, as fast as it can: nested
# directories and files, so that removing it races the writes (an orphaned borg extract).
WRITER = """
import os, itertools
for n in itertools.count():
    try:
        os.makedirs(f"d{n % 7}/e{n % 5}", exist_ok=True)
        with open(f"d{n % 7}/e{n % 5}/f{n}", "wb") as f:
            f.write(b"x" * 4096)
    except OSError:
        pass
"""


def test_a_restore_ends_an_extraction_its_killed_predecessor_left_running(fresh_server, computer_factory):
    expected = backed_up_and_lost(fresh_server, computer_factory, "Orphaned", seed=23, files=60,
                                  total_bytes=1 << 20)

    new = computer_factory()
    stale = new.home / ".homesync-restore-k1lled"
    stale.mkdir()
    chown_tree(new.home)
    # started in a session of its own, as homesync starts borg: a kill of the restore's group spares it
    writer = subprocess.Popen([str(VENV_BIN / "python"), "-c", WRITER], cwd=stale, user=UNPRIVILEGED,
                              group=UNPRIVILEGED, extra_groups=[], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (stale / "d0/e0").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        new.ok("restore", "--machine", "Orphaned", *new.remote_args(fresh_server, "joe"),
               input=PASSWORDS["joe"] + "\n")
        assert writer.poll() is not None, "the extraction left by a killed restore still runs"
        assert not list(new.home.glob(".homesync-restore-*"))
        assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
    finally:
        writer.kill()
        writer.wait()


def test_one_restore_at_a_time_and_the_second_says_so(fresh_server, computer_factory):
    expected = backed_up_and_lost(fresh_server, computer_factory, "Twice", seed=24, files=30,
                                  total_bytes=256 << 10)

    new = computer_factory()
    lock = new.home / ".local/state/homesync/restore.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    chown_tree(new.home)
    with open(lock) as held:  # what a restore under way holds
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = new.run("restore", "--machine", "Twice", *new.remote_args(fresh_server, "joe"),
                          input=PASSWORDS["joe"] + "\n")
        assert refused.returncode == 4
        assert refused.stderr.strip().splitlines() == [
            "homesync: error: another homesync restore is running for this user "
            "(wait for it to end, or stop it, then run this restore again)"]
        assert not (new.home / "Documents").exists() and not list(new.home.glob(".homesync-restore-*"))
        preview = new.json("restore", "--machine", "Twice", "--dry-run", *new.remote_args(fresh_server, "joe"),
                           input=PASSWORDS["joe"] + "\n")
        assert preview["dry_run"] is True, "a preview writes nothing and needs no lock"
    new.ok("restore", "--machine", "Twice", *new.remote_args(fresh_server, "joe"), input=PASSWORDS["joe"] + "\n")
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)


def test_a_different_account_owns_everything_it_restores(fresh_server, computer_factory):
    old = computer_factory()
    make_home(old.home, seed=31, files=120, total_bytes=2 << 20)
    old.enroll_and_back_up(fresh_server, "joe", "Old Account")
    expected = snapshot(old.home, exclude=NOT_BACKED_UP)

    other_uid = 23456
    new = computer_factory(uid=other_uid)
    new.ok("restore", "--machine", "Old Account", *new.remote_args(fresh_server, "joe"), input=PASSWORDS["joe"] + "\n")
    owners = {os.lstat(os.path.join(d, n)).st_uid for d, dirs, files in os.walk(new.home) for n in dirs + files}
    assert owners == {other_uid}
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
