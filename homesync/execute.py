"""The one place that starts subprocesses: line-buffered stderr reading that keeps
partial lines intact, secrets handed over through pipes, cancellation, and the last
lines of output kept for error messages.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

logger = logging.getLogger(__name__)


@dataclass
class Completed:
    """What a finished process left behind."""

    returncode: int
    stdout: bytes
    stderr_tail: list[str] = field(default_factory=list)


@dataclass
class Running:
    """A handle on a started process, so that another thread can stop it."""

    process: subprocess.Popen

    def interrupt(self) -> None:
        """Ask the process to stop the way Ctrl-C would (borg writes a checkpoint)."""
        self._signal(signal.SIGINT)

    def terminate(self) -> None:
        """Stop the process and everything it started."""
        self._signal(signal.SIGTERM)

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def secret_pipe(secret: bytes) -> int:
    """Given a secret, return the read end of a pipe that holds it (the write end is
    closed), for a child to read through an inherited descriptor."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, secret)
    finally:
        os.close(write_fd)
    return read_fd


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str | None = None,
    secret: bytes | None = None,
    secret_env: str = "",
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[Running], None] | None = None,
    timeout: float | None = None,
) -> Completed:
    """Run argv in its own process group with exactly env; hand `secret` over through
    a pipe whose descriptor number is put in env[secret_env]; call on_line for each
    stderr line as it arrives. Return the result; never raise on a non-zero exit."""
    env = dict(env)
    pass_fds: tuple[int, ...] = ()
    if secret is not None:
        fd = secret_pipe(secret)
        env[secret_env] = str(fd)
        pass_fds = (fd,)
    logger.debug("running %s", " ".join(argv))
    try:
        process = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=True)
    finally:
        for fd in pass_fds:
            os.close(fd)
    running = Running(process)
    if on_start:
        on_start(running)
    tail: deque[str] = deque(maxlen=20)
    reader = threading.Thread(target=_read_lines, args=(process.stderr, tail, on_line), daemon=True)
    reader.start()
    stdout = _read_all(process, running, timeout)
    reader.join()
    return Completed(process.returncode, stdout, list(tail))


def _read_all(process: subprocess.Popen, running: Running, timeout: float | None) -> bytes:
    timer = threading.Timer(timeout, running.terminate) if timeout else None
    if timer:
        timer.start()
    try:
        stdout = process.stdout.read()
        process.wait()
    finally:
        if timer:
            timer.cancel()
    return stdout


def _read_lines(stream, tail: deque, on_line: Callable[[str], None] | None) -> None:
    # readline() on a binary pipe returns whole lines, however the writes were split.
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        tail.append(line)
        if on_line:
            try:
                on_line(line)
            except Exception:  # a progress callback must never kill the reader
                logger.exception("output callback failed")


def spawn(argv: Sequence[str], *, env: dict[str, str], cwd: str | None = None) -> subprocess.Popen:
    """Start argv in its own process group with pipes on stdin, stdout and stderr, for a
    caller that pumps them itself (the server's `borg serve`)."""
    logger.debug("starting %s", " ".join(argv))
    return subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, bufsize=0)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> int:
    """Wait up to grace seconds for process to end, then SIGTERM its group, then
    SIGKILL it; return its exit code."""
    running = Running(process)
    for sig_action, wait in ((None, grace), (running.terminate, 5.0), (running._kill, 5.0)):
        if sig_action:
            sig_action()
        try:
            return process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()


def end_groups_inside(directory: Path, grace: float = 5.0) -> int:
    """End every process of this user that works inside directory (its working directory
    is there: an extraction that outlived the process that started it) with its process
    group: SIGTERM, after `grace` seconds SIGKILL. Return, once none is left, how many
    groups were ended."""
    groups = {_group(pid) for pid in _working_inside(directory) if _alive(pid)} - {None, os.getpgrp()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in _members(groups)):
            time.sleep(0.02)
    if any(_alive(pid) for pid in _members(groups)):
        logger.warning("processes of groups %s still run inside %s after SIGKILL", sorted(groups), directory)
    return len(groups)


def _working_inside(directory: Path) -> list[int]:
    """Return the processes of this user whose working directory is directory or below it."""
    inside = os.path.realpath(directory)
    found = []
    for pid in _pids():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:  # gone, or another user's
            continue
        if cwd == inside or cwd.startswith(inside + "/"):
            found.append(pid)
    return found


def _members(groups: set[int]) -> list[int]:
    return [pid for pid in _pids() if _group(pid) in groups]


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _alive(pid: int) -> bool:
    """Return whether pid runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
