"""A full disk on either side: the server's data directory, a restore target, the
client's home (each a 30 MB tmpfs). The failing operation leaves no lock, a clean
repository and an index equal to it; nothing local is lost; once there is room again
the next backup succeeds and the restore resumes and ends bit for bit."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults import trial
from tests.faults.trial import TALLY
from tests.support.homesync_client import Computer
from tests.support.homesync_server import PASSWORDS, RunningServer
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, free_port, private_dir, remove, run_as_user
from tests.support.trees import make_home, snapshot

DISK = "30m"
MACHINE = "Full Disks"


@dataclass
class Full:
    """Names the trial in assertion messages."""

    trial: str
    rc: int | None = None
    stderr: str = ""

    def __str__(self) -> str:
        return f"[seed {trial.SEED}, trial {self.trial}: rc {self.rc}, {self.stderr[-300:]!r}]"


def mount_small_disk(path: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(path)], check=True)
    os.chown(path, UNPRIVILEGED, UNPRIVILEGED)
    os.chmod(path, 0o700)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path, leave: int) -> Path:
    """Fill directory's file system but `leave` bytes with one file; return it."""
    filler = directory / "filler.bin"
    st = os.statvfs(directory)
    with open(filler, "wb") as f:
        f.truncate(0)
        for _ in range(max(0, st.f_bavail * st.f_frsize - leave) >> 20):
            f.write(b"\0" * (1 << 20))
    os.chown(filler, UNPRIVILEGED, UNPRIVILEGED)
    return filler


def start_server_on_small_disk() -> RunningServer:
    base = private_dir("hs-server-")
    data = base / "data"
    data.mkdir()
    mount_small_disk(data)
    server = RunningServer(data, f"127.0.0.1:{free_port()}", "")
    init = run_as_user([str(VENV_BIN / "homesync-server"), "init", "--data", str(data), "--listen", server.address],
                       base)
    assert init.returncode == 0, init.stderr
    server.fingerprint = init.stdout.strip()
    added = server.cli("user", "add", "joe", "--password-stdin", input=PASSWORDS["joe"] + "\n")
    assert added.returncode == 0, added.stderr
    server.start()
    return server


@pytest.fixture(scope="module")
def small_server():
    server = start_server_on_small_disk()
    yield server
    if server.process.poll() is None:
        server.stop()
    unmount(server.data)
    remove(server.data.parent)


@pytest.fixture(scope="module")
def laptop(small_server):
    computer = Computer(private_dir("hs-home-"))
    make_home(computer.home, seed=1802, files=120, total_bytes=4 << 20)
    first = computer.enroll_and_back_up(small_server, "joe", MACHINE)
    computer.archive = first["name"]
    computer.expected = snapshot(computer.home, exclude=trial.NOT_BACKED_UP)
    computer.document = trial.a_document(computer.home)
    yield computer
    remove(computer.home)


def _machine_id(server: RunningServer) -> str:
    with server.index() as index:
        return next(m["id"] for m in index.machines() if m["name"] == MACHINE)


def _fail_to_back_up(server: RunningServer, computer: Computer, name: str) -> Full:
    done = computer.run("backup", "--json")
    full = Full(name, done.returncode, done.stderr.strip())
    assert trial.wait_for(lambda: not trial.client_pids(computer.home), timeout=60), f"{full}: processes left"
    return full


def test_a_full_restore_target_loses_nothing_and_the_restore_resumes(small_server, laptop):
    _counted_run("restore", "full target disk", _full_target, small_server, laptop)


def _full_target(server: RunningServer, laptop: Computer) -> None:
    disk = private_dir("hs-target-")
    mount_small_disk(disk)
    try:
        target = disk / "home"
        trial.prepare_target(target, laptop.document)
        filler = fill(disk, leave=1 << 20)
        args = ("restore", "--machine", MACHINE, "--archive", laptop.archive, "--target", str(target), "--json")
        done = laptop.run(*args)
        full = Full("restore target disk full", done.returncode, done.stderr.strip())
        assert done.returncode != 0, f"{full}: a 4 MB restore into 1 MB of room succeeded"
        trial.assert_nothing_local_lost(full, target, laptop.document)
        trial.assert_no_lock_and_index_follows(full, server, _machine_id(server))
        filler.unlink()
        trial.assert_restore_resumes(full, laptop, target, laptop.archive, MACHINE, laptop.expected, laptop.document)
    finally:
        unmount(disk)
        remove(disk)


def test_a_full_home_fails_or_finishes_the_backup_and_loses_nothing(small_server):
    _counted_run("backup", "full home disk", _full_home, small_server)


def _full_home(server: RunningServer) -> None:
    home = private_dir("hs-home-")
    mount_small_disk(home)
    computer = Computer(home)
    try:
        make_home(home, seed=1803, files=80, total_bytes=2 << 20)
        assert computer.enroll_and_back_up(server, "joe", "Full Home")["result"] == "success"
        (home / trial.a_document(home)).write_bytes(b"changed before the disk filled\n")
        chown_tree(home)
        before = snapshot(home, exclude=trial.NOT_BACKED_UP)
        filler = fill(home / ".cache", leave=0)  # caches fill disks; backups leave .cache out
        full = _fail_to_back_up(server, computer, "client home disk full during a backup")
        machine_id = computer.machine_id()
        trial.assert_no_lock_and_index_follows(full, server, machine_id)
        from tests.support.trees import assert_same_tree
        assert_same_tree(before, snapshot(home, exclude=trial.NOT_BACKED_UP), ignore_root=True)
        filler.unlink()
        trial.assert_next_backup_succeeds(full, computer, server, machine_id)
    finally:
        unmount(home)
        remove(home)


# A backup that fills the server's disk: the session's unfinished segments are freed
# (reserve.reclaim), so the repository is not wedged.
def test_a_full_server_disk_fails_the_backup_cleanly(small_server, laptop):
    _counted_run("backup", "full server disk", _full_server, small_server, laptop)


def _full_server(server: RunningServer, laptop: Computer) -> None:
    big = laptop.home / "Videos/too-big.raw"
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(os.urandom(40 << 20))
    chown_tree(laptop.home)
    full = _fail_to_back_up(server, laptop, "server disk full during a backup")
    assert full.rc != 0, f"{full}: a 40 MB backup into a 30 MB disk succeeded"
    machine_id = _machine_id(server)
    trial.assert_no_lock_and_index_follows(full, server, machine_id)
    big.unlink()
    trial.assert_next_backup_succeeds(full, laptop, server, machine_id)


def _counted_run(kind: str, fault: str, body, *args) -> None:
    TALLY[(kind, fault, "run")] += 1
    try:
        body(*args)
    except AssertionError:
        TALLY[(kind, fault, "failed")] += 1
        raise
    TALLY[(kind, fault, "passed")] += 1
