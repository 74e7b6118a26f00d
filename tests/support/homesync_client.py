"""A computer with the homesync CLI for tests: a private HOME owned by the
unprivileged user, and a way to run `homesync` commands there."""

from __future__ import annotations

import json
import subprocess
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
    try:
        yield server, computer.machine_id(), transport.load_key(computer.home / ".local/share/homesync/machine_key")
    finally:
        remove(computer.home)
