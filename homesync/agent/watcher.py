"""Watches the source tree with inotify (through watchdog) and records changes in the dirty
set, honouring the exclusions. A tree too large for the inotify watch limit is said so
(in `warnings` and the log) and checked by periodic scans instead of missing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
import time
from collections.abc import Callable

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from homesync.agent.dirty import DirtySet
from homesync.agent.exclusions import Exclusions
from homesync.agent.scan import Digest, changed_directories, tree_digest

log = logging.getLogger(__name__)

MAX_USER_WATCHES = "/proc/sys/fs/inotify/max_user_watches"
# Opening and closing files (borg reading them, for one) must not count as changes, and
# the parent-directory "modified" events watchdog adds for every change are redundant.
EVENTS = [FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileAttribEvent, DirAttribEvent,
          FileDeletedEvent, DirDeletedEvent, FileMovedEvent, DirMovedEvent]
_IN_DELETE_SELF = 0x400


class Watcher:
    """Feeds a DirtySet from the tree under root: inotify when it fits the watch limit, else scans.

    exclusions.source should be root. start() walks the tree and may take a second on a
    large home: call it from a thread (asyncio.to_thread) in the daemon. mode is
    "inotify", "scan" or "stopped"; warnings lists what status should show.
    """

    def __init__(self, root: str | os.PathLike, dirty: DirtySet, exclusions: Exclusions, *,
                 scan_interval: float = 300.0, max_user_watches: int | None = None, headroom: float = 0.1,
                 observer_factory: Callable[[], Observer] = Observer, room_check_interval: float = 2.0) -> None:
        self.root = os.path.normpath(os.path.abspath(root))
        self.dirty, self.exclusions = dirty, exclusions
        self.mode = "stopped"
        self.warnings: list[str] = []
        self._scan_interval, self._max_user_watches, self._headroom = scan_interval, max_user_watches, headroom
        self._observer_factory, self._room_check_interval = observer_factory, room_check_interval
        self._observer: Observer | None = None
        self._overflow = _OverflowSignal(dirty)
        self._stopping = threading.Event()
        self._wake = threading.Event()  # stop() or a new scan interval
        self._switch_lock = threading.Lock()
        self._scan_thread: threading.Thread | None = None
        self._baseline: Digest = {}
        self._last_room_check = 0.0

    def start(self) -> None:
        """Start watching; fall back to scans if the tree does not fit the inotify watch limit."""
        limit = self._max_user_watches if self._max_user_watches is not None else read_max_user_watches()
        directories = count_directories(self.root)
        if limit is not None and directories > limit * (1 - self._headroom):
            self._fall_back(f"{directories} directories to watch, more than the inotify watch limit allows "
                            f"(fs.inotify.max_user_watches = {limit})")
            return
        try:
            self._start_observer()
            if not inotify_has_room(self.root):
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                self._stop_observer()
                raise
            self._stop_observer()
            self._fall_back(f"inotify cannot watch the whole tree ({exc.strerror or exc}; "
                            f"fs.inotify.max_user_watches = {limit})")
            return
        self.mode = "inotify"
        log.info("watching %s (%d directories) with inotify", self.root, directories)

    def stop(self) -> None:
        """Stop watching and scanning; safe to call more than once."""
        self._stopping.set()
        self._wake.set()
        self._stop_observer()
        if self._scan_thread is not None and self._scan_thread is not threading.current_thread():
            self._scan_thread.join()
        self.mode = "stopped"

    def scan_once(self) -> list[str]:
        """Compare the tree with the last scan, add what changed to the dirty set and return it."""
        current = tree_digest(self.root, self.exclusions)
        changed = changed_directories(self._baseline, current)
        self._baseline = current
        for directory in changed:
            self.dirty.add(directory)
        return changed

    def _start_observer(self) -> None:
        observer = self._observer_factory()
        self._observer = observer
        observer.schedule(_Handler(self), self.root, recursive=True, event_filter=EVENTS)
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._overflow)
        observer.start()

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._overflow)
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive() and observer is not threading.current_thread():
                observer.join()
        except Exception:
            log.debug("error while stopping the observer", exc_info=True)

    def _fall_back(self, reason: str) -> None:
        """Record the warning and scan every scan_interval from now on."""
        warning = f"{reason}: checking for changes by scanning every {self._scan_interval:g} s instead"
        self.warnings.append(warning)
        log.warning("%s", warning)
        self._baseline = tree_digest(self.root, self.exclusions)
        self.mode = "scan"
        self._scan_thread = threading.Thread(target=self._scan_loop, name="homesync-scan", daemon=True)
        self._scan_thread.start()

    @property
    def scan_interval(self) -> float:
        return self._scan_interval

    def set_scan_interval(self, seconds: float) -> None:
        """Scan every seconds from now on (a new fleet policy, while running): the next scan
        comes that long after the last one, not after the old interval runs out."""
        old, self._scan_interval = self._scan_interval, seconds
        if old == seconds:
            return
        self.warnings = [w.replace(f"scanning every {old:g} s", f"scanning every {seconds:g} s") for w in self.warnings]
        log.info("scan interval %g s (was %g s)", seconds, old)
        self._wake.set()

    def set_exclusions(self, exclusions: Exclusions) -> None:
        """Judge changes by these exclusions from now on (a new fleet policy, while running).
        In scan mode the next scan compares against a baseline taken with the old ones, so
        what they covered and these do not is seen as changed: harmless, it needs a backup."""
        self.exclusions = exclusions
        log.info("exclusions changed: %d pattern(s)", len(exclusions.patterns))

    def _scan_loop(self) -> None:
        last = time.monotonic()
        while True:
            self._wake.wait(max(last + self._scan_interval - time.monotonic(), 0.0))
            self._wake.clear()
            if self._stopping.is_set():
                return
            if time.monotonic() < last + self._scan_interval:
                continue  # woken by a new interval: wait for what is left of it
            try:
                self.scan_once()
            except Exception:
                log.exception("scan of %s failed", self.root)
            last = time.monotonic()

    def on_event(self, event: FileSystemEvent) -> None:
        """Record one watchdog event unless every path it names is excluded (watchdog's thread)."""
        for raw in (getattr(event, "dest_path", ""), event.src_path):  # where a moved file is now first
            path = os.fsdecode(raw)
            if path and self._counts(path, event.is_directory):
                self.dirty.add(path)
                break
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            self._check_room()

    def _counts(self, path: str, is_dir: bool) -> bool:
        """Return True if a change at path matters; a marker appearing or going always does."""
        if self.exclusions.is_marker(os.path.basename(path)):
            return not self.exclusions.excludes_path(path)
        return not self.exclusions.excludes(path, is_dir=is_dir)

    def _check_room(self) -> None:
        """Every few seconds while directories appear, check the watch limit is not exhausted."""
        now = time.monotonic()
        if now - self._last_room_check < self._room_check_interval:
            return
        self._last_room_check = now
        if not inotify_has_room(self.root):
            threading.Thread(target=self._switch_to_scan, name="homesync-scan-switch", daemon=True).start()

    def _switch_to_scan(self) -> None:
        """Leave inotify for scans after new directories exhausted the watch limit."""
        with self._switch_lock:
            if self.mode != "inotify" or self._stopping.is_set():
                return
            self._stop_observer()
            reason = "new directories exhausted the inotify watch limit"
            self.dirty.mark_possibly_dirty(reason)
            self._fall_back(reason)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher.on_event(event)


class _OverflowSignal(logging.Handler):
    """watchdog reports a kernel queue overflow (lost events) only in its log, so listen there."""

    def __init__(self, dirty: DirtySet) -> None:
        super().__init__(logging.WARNING)
        self._dirty = dirty

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage():
            self._dirty.mark_possibly_dirty("inotify dropped events (queue overflow)")


def read_max_user_watches(path: str = MAX_USER_WATCHES) -> int | None:
    """Return the per-user inotify watch limit, or None if it cannot be read."""
    try:
        with open(path) as limit:
            return int(limit.read().strip())
    except (OSError, ValueError):
        return None


def count_directories(root: str) -> int:
    """Return how many directories inotify would watch under root (all, not following symlinks)."""
    count, pending = 0, [root]
    while pending:
        directory = pending.pop()
        count += 1
        try:
            with os.scandir(directory) as listing:
                pending.extend(e.path for e in listing if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return count


def inotify_has_room(path: str) -> bool:
    """Return False if adding one more inotify watch fails with ENOSPC (the watch limit is used up)."""
    libc = _libc()
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return True  # no instance left: a different limit, and not a reason to scan
    try:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_DELETE_SELF) >= 0:
            return True
        return ctypes.get_errno() != errno.ENOSPC
    finally:
        os.close(fd)


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _LIBC
