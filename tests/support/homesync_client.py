"""A computer with the homesync CLI for tests: a private HOME owned by the
unprivileged user, and a way to run `homesync` commands there."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.homesync_server import PASSWORDS, RunningServer
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, private_dir, remove, run_as_user


@dataclass
class Computer:
    home: Path
    uid: int = UNPRIVILEGED

    def run(self, *args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_as_user([str(VENV_BIN / "homesync"), *args], self.home, input=input, timeout=timeout,
                           uid=self.uid)

    def ok(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        done = self.run(*args, input=input)
        assert done.returncode == 0, f"homesync {' '.join(args)} failed ({done.returncode}): {done.stderr}"
        return done

    def json(self, *args: str, input: str | None = None):
        return json.loads(self.ok(*args, "--json", input=input).stdout)

    def enroll(self, server: RunningServer, user: str, machine: str) -> subprocess.CompletedProcess:
        return self.run("enroll", "--server", server.address, "--user", user, "--machine", machine,
                        "--fingerprint", server.fingerprint, "--password-stdin", input=PASSWORDS[user] + "\n")

    def enroll_and_back_up(self, server: RunningServer, user: str, machine: str) -> dict:
        """Give the home to this computer's user, enroll it as machine and back it up;
        return what `homesync backup --json` said."""
        chown_tree(self.home, self.uid)
        done = self.enroll(server, user, machine)
        assert done.returncode == 0, f"homesync enroll failed ({done.returncode}): {done.stderr}"
        return self.json("backup")

    def throw_away(self) -> None:
        """Remove the computer's home once the keeping of its file catalog that its last
        backup started is done (it writes into the home until then)."""
        wait_for_keeping(self)
        shutil.rmtree(self.home)

    def machine_id(self) -> str:
        """Return the id this computer is enrolled with."""
        text = (self.home / ".config/homesync/config.toml").read_text()
        return text.split('id = "', 1)[1].split('"', 1)[0]

    def remote_args(self, server: RunningServer, user: str) -> list[str]:
        return ["--server", server.address, "--user", user, "--fingerprint", server.fingerprint,
                "--password-stdin"]


@pytest.fixture
def computer_factory():
    made: list[Computer] = []

    def make(uid: int = UNPRIVILEGED) -> Computer:
        home = private_dir("hs-home-", uid)
        made.append(Computer(home, uid))
        return made[-1]

    yield make
    for computer in made:
        remove(computer.home)


@pytest.fixture(scope="module")
def computer_factory_module():
    """Like computer_factory, for computers a whole test module shares."""
    made: list[Computer] = []

    def make() -> Computer:
        made.append(Computer(private_dir("hs-home-")))
        return made[-1]

    yield make
    for computer in made:
        remove(computer.home)


@contextmanager
def backed_up_machine(server: RunningServer, name: str) -> Iterator[tuple]:
    """Enroll a computer of joe's as name with one backup; give (server, machine id,
    machine key) and remove the computer afterwards."""
    from homesync import transport
    computer = Computer(private_dir("hs-machine-"))
    (computer.home / "a.txt").write_text("a")
    computer.enroll_and_back_up(server, "joe", name)
    background_done(computer, server)  # the keeping after the backup holds a session of this machine's
    try:
        yield server, computer.machine_id(), transport.load_key(computer.home / ".local/share/homesync/machine_key")
    finally:
        remove(computer.home)


@contextmanager
def catalog_lock(computer: Computer) -> Iterator[None]:
    """Hold the lock of the computer's file catalog that the keeping after a backup and
    find take (free once a refresh is done), once the computer's user made it (opened
    read-only: a file root created would lock them out)."""
    file = computer.home / ".cache/homesync/files" / f"{computer.machine_id()}.lock"
    while not file.exists():
        time.sleep(0.2)
    fd = os.open(file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def catalogs_kept(computer: Computer, server: RunningServer, archives: int, timeout: float = 240) -> tuple:
    """Wait until the background keeping after the backups is done: the computer's file
    catalog and the sealed copy the server keeps both hold `archives` archives; return
    them (local, server's). Raise AssertionError, with the keeper's log, after timeout."""
    from homesync import catalog
    machine_id = computer.machine_id()
    folder = computer.home / ".cache/homesync/files"
    copy = server.data / "repos" / machine_id / "homesync-files.catalog"
    passphrase = (computer.home / ".local/share/homesync/passphrase").read_bytes()
    deadline = time.monotonic() + timeout
    while True:
        with catalog_lock(computer):
            local = catalog.Catalog.load(folder / f"{machine_id}.catalog")
            shared = catalog.unseal(copy.read_bytes(), passphrase, machine_id) if copy.exists() else None
        if len(local.archives) == archives and shared is not None and len(shared.archives) == archives:
            return local, shared
        if time.monotonic() > deadline:
            raise AssertionError(f"the file catalog was not kept current ({len(local.archives)} archives here): "
                                 f"{(folder / 'keep.log').read_text()[-2000:]}")
        time.sleep(0.2)


def _keeping(computer: Computer) -> bool:
    """Whether the keeping of the computer's file catalog (a process of its user's) runs."""
    marker = f"HOME={computer.home}".encode()
    for entry in os.scandir("/proc"):
        try:
            argv = open(f"{entry.path}/cmdline", "rb").read().split(b"\0")
            environ = open(f"{entry.path}/environ", "rb").read().split(b"\0")
        except (OSError, NotADirectoryError):
            continue
        if b"keep-current" in argv and marker in environ:
            return True
    return False


def wait_for_keeping(computer: Computer, timeout: float = 240) -> None:
    """Wait until the keeping of the computer's file catalog after a backup is done.
    Raise AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while _keeping(computer):
        assert time.monotonic() < deadline, "the keeping after a backup did not end"
        time.sleep(0.2)


def background_done(computer: Computer, server: RunningServer, timeout: float = 240) -> None:
    """Wait until what a backup leaves running is done: the keeping of the computer's
    file catalog and the server's post-session check of its sessions, so that a test
    changing the repository behind the product's back changes it after them. Raise
    AssertionError after timeout."""
    deadline = time.monotonic() + timeout

    def checking() -> bool:
        with server.index() as index:
            history = index.history(computer.machine_id())
        return bool(history) and history["pending_since"] is not None

    while _keeping(computer) or checking():
        assert time.monotonic() < deadline, "the keeping after a backup, or the server's check, did not end"
        time.sleep(0.2)
