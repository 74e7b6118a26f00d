"""Two parts of a big job at once, the second in a forked child process, so that a
report of 100,000 machines uses both cores of a small server instead of one (each
part is plain Python: one core per process). What the child sends back must be
little data or a few big texts (a summary, a rendered section): results made of
many small objects gain nothing, since reading them back costs what making them did
(tried with the fleet's rows, and dropped).

A fork happens only where it is safe and pays: a job of at least MIN_ITEMS, more
than one CPU for this process, and no other thread in it (a fork copies locks that
another thread may hold: `serve`, whose metrics endpoint runs beside the SSH
threads, never forks). Otherwise, and whenever the child fails, both parts run
here one after the other: the result is the same, only slower. The child opens its
own read-only connection to the index (Index.in_this_process): it must not use the
one it inherited, which stays the parent's.

The child's result comes back through a pipe with marshal: the child is a fork of
this very interpreter, so the data is trusted and the format matches; results are
made of str, int, float, bool, None, tuples, lists and dicts.
"""

from __future__ import annotations

import logging
import marshal
import os
import threading
from typing import Callable, TypeVar

logger = logging.getLogger(__name__)
MIN_ITEMS = 20_000
MARSHAL_VERSION = 2  # without the sharing of equal objects that makes 3 and 4 slow to write
R = TypeVar("R")
S = TypeVar("S")


def at_once(here: Callable[[], R], there: Callable[[], S], size: int) -> tuple[R, S]:
    """Return (here(), there()) for a job of size items; there() runs in a forked child
    at the same time when that is worth it (it must not use what cannot cross a fork,
    such as an SQLite connection: see Index.in_this_process)."""
    if not _may_fork(size):
        return here(), there()
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(read)
        os.close(write)
        logger.debug("cannot fork (%s): both here", e)
        return here(), there()
    if pid == 0:
        _child(read, write, there)
    os.close(write)
    try:
        first = here()
    finally:
        try:
            data = _read_all(read)
        finally:
            _reap(pid)
    result = _unframe(data)
    if result is None:
        logger.debug("the other process failed: its part done here")
        return first, there()
    return first, marshal.loads(result)


def _may_fork(size: int) -> bool:
    return size >= MIN_ITEMS and hasattr(os, "fork") and _cpus() > 1 and threading.active_count() == 1


def _cpus() -> int:
    """Return how many CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _child(read: int, write: int, work: Callable[[], R]) -> None:
    """Run work(), write its result marshalled and framed to write, and end this process
    without running the parent's clean-up (buffered output, atexit, open connections
    are the parent's)."""
    code = 1
    try:
        os.close(read)
        data = marshal.dumps(work(), MARSHAL_VERSION)
        view = memoryview(len(data).to_bytes(_LENGTH, "big") + data)
        while view:
            view = view[os.write(write, view):]
        code = 0
    except BaseException:  # noqa: BLE001 - any failure: the parent does this part itself
        logger.debug("the child's part failed", exc_info=True)
    finally:
        os._exit(code)


def _unframe(data: bytes) -> bytes | None:
    """Return the child's result from what it wrote, or None unless it wrote all of it
    (the frame, not the exit status, says so: with SIGCHLD ignored there is none)."""
    if len(data) < _LENGTH or int.from_bytes(data[:_LENGTH], "big") != len(data) - _LENGTH:
        return None
    return data[_LENGTH:]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # reaped already: SIGCHLD is ignored in this process
        pass


_LENGTH = 8  # bytes of the length that frames the child's result


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        return f.read()
