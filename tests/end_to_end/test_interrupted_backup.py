"""Killing the client's borg in the middle of a backup leaves the repository neither
corrupted nor locked, and the next backup succeeds."""

from __future__ import annotations

import os
import signal
import time

from homesync import borg
from homesync_server.escrow import EscrowKey
from homesync_server.repos import SEALED_PASSPHRASE
from tests.support.processes import UNPRIVILEGED, chown_tree


def _client_borg_pids(home) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{entry.name}/cmdline", "rb").read().split(b"\0")
            if os.stat(f"/proc/{entry.name}").st_uid != UNPRIVILEGED:
                continue
            environ = open(f"/proc/{entry.name}/environ", "rb").read()
        except OSError:
            continue
        if any(a.endswith(b"/borg") for a in cmdline[:2]) and b"create" in cmdline \
                and f"HOME={home}".encode() in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def test_killing_borg_mid_backup_leaves_the_repository_usable(fresh_server, computer_factory):
    laptop = computer_factory()
    big = laptop.home / "Videos"
    big.mkdir()
    for i in range(6):  # random: over a second of borg's work even on a fast machine, killed after 0.5 s
        (big / f"clip-{i}.raw").write_bytes(os.urandom(16 << 20))
    chown_tree(laptop.home)
    assert laptop.enroll(fresh_server, "joe", "Interrupted").returncode == 0
    machine_id = laptop.machine_id()
    repo = fresh_server.data / "repos" / machine_id

    import subprocess
    from tests.support.processes import VENV_BIN, user_env
    backup = subprocess.Popen([str(VENV_BIN / "homesync"), "backup"], env=user_env(laptop.home),
                              cwd=laptop.home, user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pids := _client_borg_pids(laptop.home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids, "borg never started"
    while not (repo / "lock.exclusive").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # some data on its way
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    _, stderr = backup.communicate(timeout=60)
    assert backup.returncode != 0 and stderr.strip().count("\n") == 0, stderr

    # the server notices the dropped session and releases the lock
    deadline = time.monotonic() + 30
    while (repo / "lock.exclusive").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (repo / "lock.exclusive").exists(), "repository left locked"

    done = laptop.json("backup")
    assert done["result"] == "success" and done["files"] == 6

    passphrase = EscrowKey.load(fresh_server.data / "escrow.key").unseal(
        (repo / SEALED_PASSPHRASE).read_bytes(), machine_id)
    env = borg.BorgEnvironment(base_dir=fresh_server.data.parent / "check-home")
    checked = borg.run_borg((borg.borg_executable(), "check", "--log-json", str(repo)), env, passphrase)
    assert checked.returncode == 0
    with fresh_server.index() as index:
        assert [a["result"] for a in index.archives(machine_id)] == ["interrupted", "success"]


def _archives_on_server(server, machine_id: str) -> list[str]:
    repo = server.data / "repos" / machine_id
    passphrase = EscrowKey.load(server.data / "escrow.key").unseal((repo / SEALED_PASSPHRASE).read_bytes(), machine_id)
    env = borg.BorgEnvironment(base_dir=server.data.parent / "check-home")
    listed = borg.run_borg((borg.borg_executable(), "list", "--json", "--consider-checkpoints", str(repo)), env,
                           passphrase)
    return [a["name"] for a in listed.json["archives"]]


def _transactions(repo) -> set[str]:
    return {p.name for p in repo.glob("index.*")}


def _kill_borg_after_its_commit(laptop, repo):
    """Start `homesync backup`, SIGKILL its borg as soon as the repository has a new
    transaction (the archive is written); return the CLI's returncode and stderr."""
    import subprocess
    from tests.support.processes import VENV_BIN, user_env
    before = _transactions(repo)
    backup = subprocess.Popen([str(VENV_BIN / "homesync"), "backup"], env=user_env(laptop.home),
                              cwd=laptop.home, user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    pids: list[int] = []
    while time.monotonic() < deadline and backup.poll() is None:
        pids = pids or _client_borg_pids(laptop.home)
        if pids and _transactions(repo) - before:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    _, stderr = backup.communicate(timeout=120)
    return backup.returncode, stderr


def test_a_backup_killed_after_borg_wrote_its_archive_is_indexed_as_a_success(fresh_server, computer_factory):
    laptop = computer_factory()
    for i in range(300):  # enough files that borg's cache commit after the repository's takes a while
        (laptop.home / f"note-{i}.txt").write_text(f"note {i}\n" * 50)
    chown_tree(laptop.home)
    assert laptop.enroll(fresh_server, "joe", "Killed late").returncode == 0
    machine_id = laptop.machine_id()
    repo = fresh_server.data / "repos" / machine_id
    for trial in range(6):
        rc, stderr = _kill_borg_after_its_commit(laptop, repo)
        if rc != 0:
            break
    else:
        raise AssertionError("borg finished before it could be killed, six times")
    deadline = time.monotonic() + 30
    while (repo / "lock.exclusive").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    complete = [n for n in _archives_on_server(fresh_server, machine_id) if not n.endswith(".checkpoint")]
    assert complete, f"borg was killed before its archive was written: {stderr}"
    assert "continues from its checkpoint" not in stderr, stderr
    assert f"after its archive {complete[-1]} was complete" in stderr, stderr
    # the post-session check indexes the archive from the repository: a success with borg's figures
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with fresh_server.index() as index:  # the check's row: one with borg's archive id
            seen = {o["name"] for o in index.archive_observations(machine_id) if o["archive_id"]}
            indexed = index.archives(machine_id)
        rows = [(a["result"], a["files"]) for a in indexed if a["name"] == complete[-1] and a["name"] in seen]
        if rows:
            break
        time.sleep(0.2)
    assert rows == [("success", 300)], indexed
