"""execute.end_groups_inside on real processes of an unprivileged user: an extraction
left working in a staging directory, with the helper it started, is ended; a process
working elsewhere is not."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from homesync import execute
from tests.support.processes import UNPRIVILEGED, chown_tree

# a parent that ignores SIGTERM (only SIGKILL ends it) and a child in its group, both in cwd
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("ready", flush=True)
time.sleep(600)
"""


def start(cwd, code: str = STUBBORN) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, user=UNPRIVILEGED, group=UNPRIVILEGED,
                               extra_groups=[], start_new_session=True, stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"ready\n"
    return process


def group_members(group: int) -> list[int]:
    return [pid for pid in execute._pids() if execute._group(pid) == group and execute._alive(pid)]


def test_the_group_working_inside_is_ended_and_one_working_elsewhere_is_not(tmp_path):
    inside, elsewhere = tmp_path / ".homesync-restore-x" / "deep", tmp_path / "elsewhere"
    inside.mkdir(parents=True)
    elsewhere.mkdir()
    chown_tree(tmp_path)
    stray, bystander = start(inside), start(elsewhere)
    try:
        assert len(group_members(stray.pid)) == 2
        assert execute.end_groups_inside(tmp_path / ".homesync-restore-x", grace=0.5) == 1
        assert stray.wait(timeout=5) == -9, "SIGTERM ignored: SIGKILL after the grace"
        assert group_members(stray.pid) == [], "the helper it started ended with it"
        assert bystander.poll() is None and len(group_members(bystander.pid)) == 2
    finally:
        for process in (stray, bystander):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_nothing_working_inside_ends_nothing(tmp_path):
    assert execute.end_groups_inside(tmp_path) == 0
