"""The fault suite's common parts: the seed and tally of trials, the victims found by
their argv in /proc, and the checks every trial ends with (no lock left, `borg check`
clean, the index equal to the repository, the next backup succeeds)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.end_to_end.test_history import checked, wait_for
from tests.support.homesync_client import Computer
from tests.support.homesync_server import RunningServer
from tests.support.processes import UNPRIVILEGED, VENV_BIN, user_env
from tests.support.repositories import server_borg

from tests.faults.tally import SEED, TALLY  # noqa: F401  (the trials' seed and tally)
OK_RESULTS = ("success", "warning")


def rng_for(trial: str) -> random.Random:
    """Return the random source of one trial: the same seed and trial give the same delays."""
    return random.Random(f"{SEED}:{trial}")


def _processes():
    """Yield (pid, argv, environ) of the unprivileged user's processes."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry.path).st_uid != UNPRIVILEGED:
                continue
            argv = open(f"{entry.path}/cmdline", "rb").read().split(b"\0")
            environ = open(f"{entry.path}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        yield int(entry.name), argv, environ


def client_pids(home: Path, victim: str = "any", operation: str = "") -> list[int]:
    """Return the pids of the computer's processes (HOME=home): the CLI ('cli'), its borg
    running operation ('borg'), the shim ('shim'), or all of them ('any')."""
    marker = f"HOME={home}".encode()
    found = []
    for pid, argv, environ in _processes():
        if marker not in environ:
            continue
        is_cli = len(argv) > 1 and argv[1].endswith(b"/homesync")
        is_borg = any(a.endswith(b"/borg") for a in argv[:2]) and operation.encode() in argv
        is_shim = b"homesync.shim" in argv
        if {"any": is_cli or is_borg or is_shim, "cli": is_cli, "borg": is_borg, "shim": is_shim}[victim]:
            found.append(pid)
    return found


def server_pids(server: RunningServer, victim: str) -> list[int]:
    """Return the pids of the server's `borg serve` processes or of the server itself."""
    pattern = {"borg serve": f"borg serve --restrict-to-repository {server.data}",
               "server": f"homesync-server serve --data {server.data} "}[victim]
    found = subprocess.run(["pgrep", "-f", "-u", str(UNPRIVILEGED), pattern], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def victim_pids(victim: str, computer: Computer, server: RunningServer, operation: str) -> list[int]:
    if victim in ("borg serve", "server"):
        return server_pids(server, victim)
    return client_pids(computer.home, victim, operation)


def start(computer: Computer, *args: str, stdin: str = "") -> subprocess.Popen:
    """Start `homesync ARGS` as the computer's user (its own process group)."""
    process = subprocess.Popen([str(VENV_BIN / "homesync"), *args], env=user_env(computer.home),
                               cwd=computer.home, user=computer.uid, group=computer.uid, extra_groups=[],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    return process


def timed(computer: Computer, *args: str) -> float:
    """Return how long `homesync ARGS` takes (it must succeed)."""
    began = time.monotonic()
    computer.ok(*args)
    return time.monotonic() - began


@dataclass
class Kill:
    """What a trial did: whom it killed, after how long, and how the operation ended."""

    trial: str
    victim: str
    delay: float
    killed: list[int]
    rc: int | None = None
    stderr: str = ""

    def __str__(self) -> str:
        return (f"[seed {SEED}, trial {self.trial}, victim {self.victim}, delay {self.delay:.2f} s, "
                f"killed {self.killed or 'nothing: the victim had ended'}, rc {self.rc}]")


def kill_during(trial: str, victim: str, computer: Computer, server: RunningServer, operation: str,
                args: tuple[str, ...], duration: float) -> Kill:
    """Run `homesync ARGS`; once the victim runs, SIGKILL it after a random part of what
    remains of the operation's measured duration; wait for every process of the computer
    to end, and restart a killed server."""
    share = rng_for(trial).uniform(0.05, 0.9)
    began = time.monotonic()
    process = start(computer, *args)
    while process.poll() is None and not victim_pids(victim, computer, server, operation):
        time.sleep(0.01)
    appeared = time.monotonic() - began
    time.sleep(share * max(duration - appeared, 0.2))
    delay = time.monotonic() - began
    pids = victim_pids(victim, computer, server, operation) if process.poll() is None else []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if victim == "server" and pids:
        server.process.wait(timeout=30)
        server.start()
    try:
        _, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    kill = Kill(trial, victim, delay, pids, process.returncode, stderr.strip())
    # a killed CLI leaves its borg running on its own: let it finish
    left = wait_for(lambda: not client_pids(computer.home), timeout=120)
    assert left, f"{kill}: the computer's processes still run 120 s later: {client_pids(computer.home)}"
    return kill


def assert_no_lock_and_index_follows(kill, server: RunningServer, machine_id: str) -> None:
    """Assert the repository is not locked, the index equals the repository, and borg
    check finds it clean."""
    gone = wait_for(lambda: not server_pids(server, "borg serve"), timeout=30)
    assert gone, f"{kill}: borg serve still runs 30 s after the session ended"
    _server_borg(kill, server, machine_id, "list", "--lock-wait", "1", "{repo}")  # at once: no lock left
    assert wait_for(lambda: checked(server, machine_id), timeout=60), f"{kill}: the post-session check never ran"
    listed = _server_borg(kill, server, machine_id, "list", "--lock-wait", "1", "--json", "{repo}")
    in_repository = {a["name"] for a in json.loads(listed.stdout)["archives"] if not a["name"].endswith(".checkpoint")}
    rows = dict(server.index_rows(f"SELECT name, result FROM archives WHERE machine_id = '{machine_id}'"))
    missing = in_repository - rows.keys()
    assert not missing, f"{kill}: archives in the repository but not in the index: {sorted(missing)}"
    ghosts = {n for n, r in rows.items() if r in OK_RESULTS and n not in in_repository}
    assert not ghosts, f"{kill}: the index says {sorted(ghosts)} succeeded but the repository lacks them"
    wrong = {n: rows[n] for n in in_repository if rows[n] not in OK_RESULTS}
    assert not wrong, f"{kill}: complete archives indexed as not successful: {wrong}"
    _server_borg(kill, server, machine_id, "check", "--lock-wait", "5", "{repo}")


def _server_borg(kill, server: RunningServer, machine_id: str, *args: str):
    try:
        return server_borg(server, machine_id, *args)
    except AssertionError as error:
        raise AssertionError(f"{kill}: borg {args[0]} of the repository failed: {error}") from None


def assert_next_backup_succeeds(kill, computer: Computer, server: RunningServer, machine_id: str) -> None:
    done = computer.run("backup", "--json")
    assert done.returncode == 0, f"{kill}: the next backup failed ({done.returncode}): {done.stderr}"
    result = json.loads(done.stdout)
    assert result["result"] in OK_RESULTS and result["indexed"], f"{kill}: the next backup: {result}"
    assert wait_for(lambda: checked(server, machine_id), timeout=60), f"{kill}: the post-session check never ran"
    (row,) = server.index_rows(f"SELECT result FROM archives WHERE machine_id = '{machine_id}' "
                               f"AND name = '{result['name']}'")
    assert row[0] in OK_RESULTS, f"{kill}: the next backup is indexed as {row[0]}"


# -- restores ------------------------------------------------------------------------

NOT_BACKED_UP = (".config/homesync", ".local/share/homesync", ".local/state/homesync", ".cache",
                 ".local/share/Trash")
LOCAL_ONLY = "local-only.txt"
LOCAL_EDIT = b"a local edit the archive does not have\n"


def a_document(home: Path) -> str:
    """Return the relative path of one file under Documents."""
    for dirpath, _, filenames in sorted(os.walk(home / "Documents")):
        for name in sorted(filenames):
            return os.path.relpath(os.path.join(dirpath, name), home)
    raise AssertionError("the home has no documents")


def prepare_target(target: Path, document: str) -> None:
    """Put local files into a restore target: one the archive lacks and a local edit of
    a document the archive has."""
    target.mkdir(exist_ok=True)
    (target / LOCAL_ONLY).write_bytes(b"only here\n")
    (target / document).parent.mkdir(parents=True, exist_ok=True)
    (target / document).write_bytes(LOCAL_EDIT)
    for path in (target, *target.rglob("*")):
        os.lchown(path, UNPRIVILEGED, UNPRIVILEGED)


def assert_nothing_local_lost(kill, target: Path, document: str) -> None:
    """Assert the target's own files are intact, or the edited document kept aside."""
    assert (target / LOCAL_ONLY).read_bytes() == b"only here\n", f"{kill}: {LOCAL_ONLY} lost"
    copies = [target / document] + list(target.glob(f"homesync-kept-*/{document}"))
    assert any(p.exists() and p.read_bytes() == LOCAL_EDIT for p in copies), \
        f"{kill}: the local edit of {document} is neither in place nor kept aside"


def assert_restore_resumes(kill, computer: Computer, target: Path, archive: str, machine: str,
                           expected: dict, document: str) -> None:
    """Unless the first restore succeeded after all, run it again; assert the target ends
    bit for bit equal to the archive, with its own files intact or kept aside and no
    staging directory left."""
    from tests.support.trees import assert_same_tree, snapshot

    if kill.rc != 0:
        done = computer.run("restore", "--machine", machine, "--archive", archive, "--target", str(target))
        assert done.returncode == 0, f"{kill}: the resumed restore failed ({done.returncode}): {done.stderr}"
    assert not list(target.glob(".homesync-restore-*")), f"{kill}: staging directories left in the target"
    assert_nothing_local_lost(kill, target, document)
    kept = [p.name for p in target.glob("homesync-kept-*")]
    try:
        assert_same_tree(expected, snapshot(target, exclude=[LOCAL_ONLY, *kept]), ignore_root=True)
    except AssertionError as error:
        raise AssertionError(f"{kill}: the restored tree is not the archive: {error}") from None
