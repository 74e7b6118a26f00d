"""files.only_one: one holder at a time, the second told at once, and the lock free
again when its holder ends, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from homesync.errors import ConflictError
from homesync.files import only_one

# holds the lock, starts a child that outlives it, says so, and waits to be killed
HOLD = """
import subprocess, sys
from pathlib import Path
from homesync.files import only_one
with only_one(Path(sys.argv[1]), RuntimeError()):
    child = subprocess.Popen(["sleep", "600"])
    print(child.pid, flush=True)
    sys.stdin.read()
"""


def busy() -> ConflictError:
    return ConflictError("another one runs", "wait for it")


def test_a_second_holder_is_refused_and_the_lock_is_free_after(tmp_path):
    lock = tmp_path / "state" / "job.lock"
    with only_one(lock, busy()):
        assert oct(lock.stat().st_mode & 0o777) == "0o600" and oct(lock.parent.stat().st_mode & 0o777) == "0o700"
        with pytest.raises(ConflictError, match="another one runs"):
            with only_one(lock, busy()):
                pass
    with only_one(lock, busy()):
        pass


def test_a_killed_holder_lets_go_and_its_children_never_held_it(tmp_path):
    lock = tmp_path / "job.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        child = int(holder.stdout.readline())
        with pytest.raises(ConflictError):
            with only_one(lock, busy()):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)  # the child it started still runs
        with only_one(lock, busy()):
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
