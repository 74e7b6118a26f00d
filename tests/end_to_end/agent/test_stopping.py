"""Stopping a backup half-way: the corporate link drops (borg is interrupted, leaves a
checkpoint, and the next link-up completes the backup), and SIGTERM to the agent (a
clean exit 0 that leaves the repository usable). Big incompressible data makes the
backup last a few seconds."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from homesync import borg
from homesync_server.escrow import EscrowKey
from homesync_server.repos import SEALED_PASSPHRASE
from tests.end_to_end.agent.harness import wait_for
from tests.end_to_end.test_interrupted_backup import _client_borg_pids
from tests.support.processes import chown_tree

BIG_FILES, BIG_FILE_SIZE = 10, 32 << 20  # 320 MiB that neither compresses nor deduplicates


@pytest.fixture
def big_laptop(laptop):
    videos = laptop.home / "Videos"
    videos.mkdir()
    for i in range(BIG_FILES):
        (videos / f"clip-{i}.raw").write_bytes(os.urandom(BIG_FILE_SIZE))
    chown_tree(videos)
    return laptop


def _repository(laptop):
    return laptop.server.data / "repos" / laptop.machine_id


def _borg_on_repository(laptop, *args: str) -> borg.BorgResult:
    """Run borg as the server would, with the escrowed passphrase, on this laptop's repository."""
    repo = _repository(laptop)
    passphrase = EscrowKey.load(laptop.server.data / "escrow.key").unseal((repo / SEALED_PASSPHRASE).read_bytes(),
                                                                         laptop.machine_id)
    env = borg.BorgEnvironment(base_dir=laptop.server.data.parent / "check-home")
    return borg.run_borg((borg.borg_executable(), *args, str(repo)), env, passphrase)


def _wait_unlocked(laptop) -> None:
    lock = _repository(laptop) / "lock.exclusive"
    wait_for(lambda: not lock.exists(), 30, "the repository lock released")


def _backing_up(laptop, at_least: int) -> dict:
    return laptop.wait_status(lambda s: s["job"] is not None and s["job"]["bytes"] >= at_least, 30,
                              f"a backup past {at_least >> 20} MiB")


def test_link_drop_stops_borg_and_the_next_link_up_completes_the_backup(big_laptop, fake_nm):
    laptop = big_laptop
    laptop.start()
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    running = _backing_up(laptop, 64 << 20)
    print(f"link drops at {running['job']['bytes'] >> 20} MiB")
    shown = laptop.status().stdout
    assert "State:        backing up, " in shown and " files so far, because the corporate network came up via " \
        "Office" in shown, shown

    dropped = time.monotonic()
    fake_nm.connection_down("Office")
    status = laptop.wait_status(lambda s: s["job"] is None, 30, "the backup stopped")
    print(f"link down -> backup stopped: {time.monotonic() - dropped:.2f} s")
    assert status["last_result"]["result"] == "interrupted"
    assert status["consecutive_failures"] == 0, "an interrupted backup is not a failure"
    assert status["reason"]["code"] == "off_network"
    assert _client_borg_pids(laptop.home) == []
    _wait_unlocked(laptop)
    assert [a[1] for a in laptop.archives()] == ["interrupted"]
    listed = _borg_on_repository(laptop, "list", "--json", "--consider-checkpoints")
    checkpoints = [a["name"] for a in listed.json["archives"]]
    assert len(checkpoints) == 1 and checkpoints[0].endswith(".checkpoint"), checkpoints

    fake_nm.connection_up("Office", domains=["corp.example.com"])
    wait_for(laptop.successes, 60, "the backup completed after the link came back")
    (_, first, *_), (_, second, original, new) = laptop.archives()
    assert (first, second) == ("interrupted", "success")
    print(f"after the checkpoint: {new >> 20} MiB new of {original >> 20} MiB")
    assert new < original, "the second backup did not continue from the checkpoint"
    assert _borg_on_repository(laptop, "check").returncode == 0
    names = [a["name"] for a in _borg_on_repository(laptop, "list", "--json").json["archives"]]
    assert len(names) == 1 and not names[0].endswith(".checkpoint")


def test_sigterm_stops_the_agent_cleanly_even_mid_backup(big_laptop, fake_nm):
    laptop = big_laptop
    not_running = laptop.status()
    assert not_running.returncode == 5
    assert not_running.stdout == "homesync agent is not running; last backup: none on record\n"

    laptop.start()
    assert laptop.socket.exists() and oct(laptop.socket.stat().st_mode & 0o777) == "0o600"
    assert oct(laptop.socket.parent.stat().st_mode & 0o777) == "0o700"
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    _backing_up(laptop, 32 << 20)

    asked = time.monotonic()
    assert laptop.stop(signal.SIGTERM) == 0
    print(f"SIGTERM mid-backup -> agent exited: {time.monotonic() - asked:.2f} s")
    assert not laptop.socket.exists()
    assert _client_borg_pids(laptop.home) == []
    assert "received SIGTERM" in laptop.log_text() and "Traceback" not in laptop.log_text()
    _wait_unlocked(laptop)
    assert [a[1] for a in laptop.archives()] == ["interrupted"]
    assert _borg_on_repository(laptop, "check").returncode == 0
    state = json.loads((laptop.home / ".local/state/homesync/agent-state.json").read_text())
    assert state["last_result"]["result"] == "interrupted" and state["consecutive_failures"] == 0

    after = laptop.status("--json")
    assert after.returncode == 5
    assert json.loads(after.stdout)["last_backup"]["result"] == "interrupted"
    assert laptop.status().stdout.startswith("homesync agent is not running; last backup: ")
