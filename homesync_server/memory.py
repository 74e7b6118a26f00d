"""`serve`'s memory: glibc's malloc is held to a few arenas, and memory Python freed is
given back to the system when the server goes quiet (glibc keeps it otherwise, and RSS
grows with every burst of sessions); and a debugging aid: with HOMESYNC_TRACEMALLOC=N set, allocations are traced (N frames) and
SIGUSR1 logs what grew since the previous SIGUSR1 and the live objects of the kinds
suspected of piling up."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import threading
import tracemalloc
from collections import Counter

logger = logging.getLogger(__name__)
ENVIRONMENT = "HOMESYNC_TRACEMALLOC"
TOP = 25
M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2
_WATCHED = ("Transport", "Channel", "Authenticator", "BorgRpcFilter", "Thread", "Popen", "socket", "Packetizer")


def install_trace() -> bool:
    """Start tracing and install the SIGUSR1 dump when ENVIRONMENT asks for it; return whether it did."""
    frames = os.environ.get(ENVIRONMENT, "")
    if not frames.isdigit() or int(frames) < 1:
        return False
    tracemalloc.start(int(frames))
    previous: list[tracemalloc.Snapshot] = []

    def dump(signum, frame) -> None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        by_line = snapshot.compare_to(previous[0], "lineno") if previous else snapshot.statistics("lineno")
        by_stack = snapshot.compare_to(previous[0], "traceback") if previous else []
        previous[:] = [snapshot]
        current, peak = tracemalloc.get_traced_memory()
        logger.warning("memory: traced %.1f MB (peak %.1f MB), %d threads, live objects %s", current / 1e6,
                       peak / 1e6, threading.active_count(), dict(live_objects()))
        for stat in by_line[:TOP]:
            logger.warning("memory: %s", stat)
        for stat in by_stack[:5]:  # tracemalloc lists a traceback oldest frame first
            logger.warning("memory: grew %+d B in %d blocks at: %s", stat.size_diff, stat.count_diff,
                           " -> ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback))
        before = resident_mb()
        trimmed = release_free()
        logger.warning("memory: resident %.1f MB, %.1f MB after malloc_trim%s", before, resident_mb(),
                       "" if trimmed else " (not available)")

    signal.signal(signal.SIGUSR1, dump)
    logger.warning("memory tracing on (%s frames): SIGUSR1 logs what grew", frames)
    return True


def live_objects() -> Counter:
    """Return how many objects of each watched class name the garbage collector tracks."""
    counts: Counter = Counter()
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in _WATCHED or name.endswith("Transport"):
            counts[name] += 1
    return counts


def resident_mb() -> float:
    """Return this process's resident set size in MB (VmRSS)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def fewer_arenas(arenas: int = ARENAS) -> bool:
    """Let glibc's malloc use at most this many arenas (call before threads start);
    return whether this C library can. Python threads allocate under the GIL, so more
    arenas buy no parallelism, and each keeps its own high-water mark as RSS."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def release_free() -> bool:
    """Give the C allocator's free memory back to the system (glibc's malloc_trim: a
    few milliseconds); return whether this C library can."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return False
    _LIBC.malloc_trim(0)
    return True


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
