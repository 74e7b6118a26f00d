"""A drill's bound on scratch space while borg extracts: a watcher that stops the
extract once the restored tree takes more than its budget, whatever the archive's
listing claimed (the sandbox's per-file size limit catches one huge file sooner).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from homesync import execute

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.25


def tree_bytes(root: Path) -> int:
    """Return the bytes the files under root take on disk (allocated blocks, so sparse
    files count as what they really use), not following symlinks."""
    total, stack = 0, [os.fsencode(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed or unreadable meanwhile: what is left is counted next time
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


class ScratchWatch:
    """Watches a directory while a process writes into it; stops the process (its whole
    group) when the directory holds more than budget bytes. The file system's free
    space is read every poll (cheap); the tree is walked only when that shows growth
    past the budget, since other programs may be writing to the same file system."""

    def __init__(self, root: Path, budget: int, poll: float = POLL_SECONDS) -> None:
        self.root, self.budget, self.poll = root, budget, poll
        self.tripped = False
        self.peak = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, running: execute.Running) -> None:
        """Begin watching on behalf of running (an on_start callback)."""
        self._start_free = _free(self.root)
        self._thread = threading.Thread(target=self._watch, args=(running,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the process ended)."""
        self._done.set()
        if self._thread:
            self._thread.join()

    def _watch(self, running: execute.Running) -> None:
        next_walk = 0.0
        while not self._done.wait(self.poll):
            grown = self._start_free - _free(self.root)
            if grown <= self.budget or time.monotonic() < next_walk:
                continue
            started = time.monotonic()
            used = tree_bytes(self.root)
            next_walk = time.monotonic() + 10 * (time.monotonic() - started)  # walking never dominates
            self.peak = max(self.peak, used)
            if used > self.budget:
                logger.warning("stopping the extract into %s: %d bytes used, the budget is %d",
                               self.root, used, self.budget)
                self.tripped = True
                running.terminate()
                return


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
