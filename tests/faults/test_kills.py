"""SIGKILL, at a random moment of a backup or a restore, the CLI, the client's borg, the
shim, the server's `borg serve` or the whole server; then no lock is left, `borg check`
is clean, the index equals the repository, and: after a backup, the next backup
succeeds; after a restore, the restore run again resumes and ends bit for bit equal to
the archive with nothing local lost (and after a server-side kill the next backup
succeeds). Replay a failure with HOMESYNC_FAULT_SEED; HOMESYNC_FAULT_TRIALS=N for a soak."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.faults import trial
from tests.faults.trial import TALLY
from tests.support.homesync_client import computer_factory_module  # noqa: F401  (a fixture)
from tests.support.homesync_server import start_server
from tests.support.processes import chown_tree, private_dir, remove
from tests.support.trees import make_home, snapshot

# per victim and operation: 1 keeps the whole suite near 4 minutes; more for a soak run
TRIALS_PER_VICTIM = int(os.environ.get("HOMESYNC_FAULT_TRIALS", "1"))
VICTIMS = ("cli", "borg", "shim", "borg serve", "server")
SERVER_SIDE = ("borg serve", "server")
MACHINE = "Fault Trials"
FRESH_BYTES = 8 << 20  # new data every backup trial sends


class Bench:
    """The module's server and laptop, its base archive, and the measured durations."""

    def __init__(self, server, laptop, machine_id, archive, expected, document):
        self.server, self.laptop, self.machine_id = server, laptop, machine_id
        self.archive, self.expected, self.document = archive, expected, document
        self.backup_seconds = self.restore_seconds = 0.0
        self.targets = []

    def new_data(self, trial_name: str) -> None:
        """Replace the home's fresh file by new bytes, so the backup has data to send."""
        data = random.Random(f"{trial.SEED}:{trial_name}:data").randbytes(FRESH_BYTES)
        (self.laptop.home / "fresh.bin").write_bytes(data)
        chown_tree(self.laptop.home)

    def new_target(self):
        target = private_dir("hs-target-") / "home"
        self.targets.append(target.parent)
        trial.prepare_target(target, self.document)
        return target


@pytest.fixture(scope="module")
def bench(computer_factory_module):
    server = start_server()
    laptop = computer_factory_module()
    make_home(laptop.home, seed=1801, files=60, total_bytes=8 << 20)
    chown_tree(laptop.home)
    assert laptop.enroll(server, "joe", MACHINE).returncode == 0
    began = time.monotonic()
    first = laptop.json("backup")  # as much new data as a trial's backup sends
    backup_seconds = time.monotonic() - began
    expected = snapshot(laptop.home, exclude=trial.NOT_BACKED_UP)
    machine_id = laptop.machine_id()
    made = Bench(server, laptop, machine_id, first["name"], expected, trial.a_document(laptop.home))
    made.backup_seconds = backup_seconds
    target = made.new_target()
    made.restore_seconds = trial.timed(laptop, "restore", "--machine", MACHINE, "--archive", made.archive,
                                       "--target", str(target))
    print(f"seed {trial.SEED}; a backup takes {made.backup_seconds:.1f} s, a restore {made.restore_seconds:.1f} s")
    yield made
    if server.process.poll() is None:
        server.stop()
    remove(server.data.parent)
    for place in made.targets:
        remove(place)




def _record(kind: str, victim: str, outcome: str) -> None:
    TALLY[(kind, victim, outcome)] += 1


TRIALS = [(victim, n) for victim in VICTIMS for n in range(TRIALS_PER_VICTIM)]


@pytest.mark.parametrize("victim,number", TRIALS, ids=[f"{v.replace(' ', '-')}-{n}" for v, n in TRIALS])
def test_a_kill_during_a_backup(bench, victim, number):
    name = f"backup-{victim}-{number}"
    bench.new_data(name)
    _record("backup", victim, "run")
    kill = trial.kill_during(name, victim, bench.laptop, bench.server, "create", ("backup", "--json"),
                             bench.backup_seconds)
    print(kill)
    if not kill.killed:
        _record("backup", victim, "missed")
    try:
        trial.assert_no_lock_and_index_follows(kill, bench.server, bench.machine_id)
        trial.assert_next_backup_succeeds(kill, bench.laptop, bench.server, bench.machine_id)
    except AssertionError:
        _record("backup", victim, "failed")
        raise
    _record("backup", victim, "passed")


@pytest.mark.parametrize("victim,number", TRIALS, ids=[f"{v.replace(' ', '-')}-{n}" for v, n in TRIALS])
def test_a_kill_during_a_restore(bench, victim, number):
    name = f"restore-{victim}-{number}"
    target = bench.new_target()
    _record("restore", victim, "run")
    args = ("restore", "--machine", MACHINE, "--archive", bench.archive, "--target", str(target), "--json")
    kill = trial.kill_during(name, victim, bench.laptop, bench.server, "extract", args, bench.restore_seconds)
    print(kill)
    if not kill.killed:
        _record("restore", victim, "missed")
    try:
        trial.assert_nothing_local_lost(kill, target, bench.document)
        trial.assert_no_lock_and_index_follows(kill, bench.server, bench.machine_id)
        trial.assert_restore_resumes(kill, bench.laptop, target, bench.archive, MACHINE, bench.expected,
                                     bench.document)
        if victim in SERVER_SIDE:  # a restore only reads: only a server-side kill could harm the next backup
            trial.assert_next_backup_succeeds(kill, bench.laptop, bench.server, bench.machine_id)
    except AssertionError:
        _record("restore", victim, "failed")
        raise
    _record("restore", victim, "passed")
