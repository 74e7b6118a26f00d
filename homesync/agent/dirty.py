"""The dirty set: what changed in the source tree since the last backup started.

Thread-safe and bounded: it keeps a count in time buckets and a small sample of paths,
never one entry per change, so a burst of 100,000 changes costs nothing to hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from homesync.agent.policy import DirtyState

log = logging.getLogger(__name__)


class _Bucket:
    __slots__ = ("start", "end", "count")

    def __init__(self, when: float) -> None:
        self.start = self.end = when
        self.count = 1


class DirtySet:
    """Counts changes; on_dirty() is called (from the changing thread) when it goes from clean to dirty.

    possibly_dirty marks changes that may have been missed (agent restart, lost events); a
    successful backup that started after the mark clears it.
    """

    def __init__(self, *, possibly_dirty: bool = False, sample_size: int = 100, bucket_width: float = 1.0,
                 max_buckets: int = 256, clock: Callable[[], float] = time.time,
                 on_dirty: Callable[[], None] | None = None) -> None:
        self.on_dirty = on_dirty
        self._clock, self._width, self._max_buckets = clock, bucket_width, max_buckets
        self._sample_size = sample_size
        self._lock = threading.Lock()
        self._buckets: list[_Bucket] = []
        self._sample: OrderedDict[str, float] = OrderedDict()
        self._possibly_since: float | None = clock() if possibly_dirty else None
        self.possible_reason = "the agent restarted" if possibly_dirty else ""

    def add(self, path: str, when: float | None = None) -> None:
        """Record one change of path (at `when`, default now)."""
        when = self._clock() if when is None else when
        with self._lock:
            was_clean = not self._buckets and self._possibly_since is None
            self._count_change(when)
            self._sample[path] = when
            self._sample.move_to_end(path)
            if len(self._sample) > self._sample_size:
                self._sample.popitem(last=False)
        if was_clean:
            self._notify()

    def mark_possibly_dirty(self, reason: str) -> None:
        """Record that changes may have been missed (e.g. lost inotify events)."""
        with self._lock:
            was_clean = not self._buckets and self._possibly_since is None
            self._possibly_since = self._clock()
            self.possible_reason = reason
        log.info("possibly dirty: %s", reason)
        if was_clean:
            self._notify()

    def state(self) -> DirtyState:
        """Return the counts and times the policy needs."""
        with self._lock:
            return self._state()

    def _state(self) -> DirtyState:
        if not self._buckets:
            return DirtyState(possibly_dirty=self._possibly_since is not None)
        return DirtyState(
            count=sum(b.count for b in self._buckets),
            first_change=self._buckets[0].start,
            last_change=max(b.end for b in self._buckets),
            possibly_dirty=self._possibly_since is not None,
        )

    def sample(self) -> list[str]:
        """Return up to sample_size recently changed paths, oldest first."""
        with self._lock:
            return list(self._sample)

    def snapshot(self) -> tuple[DirtyState, list[str], str]:
        """Return the state, the sample and why changes may have been missed, all read at
        one moment (the watcher's thread adds between separate reads)."""
        with self._lock:
            return self._state(), list(self._sample), self.possible_reason if self._possibly_since is not None else ""

    def clear_up_to(self, started: float) -> None:
        """Forget changes seen before a successful job started at `started`; keep later ones.

        A bucket that straddles `started` is kept whole: counting a change twice is harmless,
        losing one is not.
        """
        with self._lock:
            self._buckets = [b for b in self._buckets if b.end >= started]
            for path in [p for p, when in self._sample.items() if when < started]:
                del self._sample[path]
            if self._possibly_since is not None and self._possibly_since < started:
                self._possibly_since = None
                self.possible_reason = ""

    def _count_change(self, when: float) -> None:
        """Add one change to the last bucket if it is recent, else open a bucket (merging old ones)."""
        last = self._buckets[-1] if self._buckets else None
        if last is not None and when - last.start < self._width:
            last.count += 1
            last.start, last.end = min(last.start, when), max(last.end, when)
            return
        self._buckets.append(_Bucket(when))
        if len(self._buckets) > self._max_buckets:
            first, second = self._buckets[0], self._buckets.pop(1)
            first.end, first.count = max(first.end, second.end), first.count + second.count

    def _notify(self) -> None:
        if self.on_dirty is None:
            return
        try:
            self.on_dirty()
        except Exception:
            log.exception("on_dirty callback failed")
