"""Limits on what connections may hold: a deadline and a bound for connections that
have not logged in yet, and a cap on the sessions (borg serve, RPC) running at once,
per login and in all. Live counts of this process; nothing here outlives it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from homesync.errors import ServerBusyError
from homesync_server.config import Limits


class SessionSlots:
    """Counts the sessions running per login and in all; refuses those over the caps."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._closed = False

    def take(self, login: str) -> None:
        """Take a place for one session of login; raise ServerBusyError if there is none
        (or the node is draining: the client goes to another node)."""
        with self._lock:
            if self._closed:
                raise ServerBusyError("this server node is stopping and takes no new session",
                                      "try again: another node (or this one, restarted) takes it")
            if self._running[login] >= self.limits.max_sessions_per_login:
                raise ServerBusyError(
                    f"too many sessions for this login ({self.limits.max_sessions_per_login} at once)",
                    "wait for one to end")
            if sum(self._running.values()) >= self.limits.max_sessions:
                raise ServerBusyError("too many sessions on this server right now", "try again in a minute")
            self._running[login] += 1

    def close(self) -> None:
        """Take no new session from now on (SIGTERM: the node drains)."""
        with self._lock:
            self._closed = True

    def running(self) -> int:
        """Return how many sessions run now."""
        with self._lock:
            return sum(self._running.values())

    def give_back(self, login: str) -> None:
        """Free the place one session of login held."""
        with self._lock:
            self._running[login] -= 1
            if self._running[login] <= 0:
                del self._running[login]


class WaitingRoom:
    """Connections that have not logged in yet: each is closed at its deadline, and when
    more wait than the bounds allow (from one address, or in all) the oldest is closed
    to make room, so idle connections cannot hold the server's threads."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._waiting: dict[object, tuple[str, float]] = {}  # insertion order: oldest first
        self._lock = threading.Lock()

    def enter(self, connection, source: str) -> list:
        """Admit connection (from address source); return the connections to close to
        make room for it."""
        with self._lock:
            evicted = []
            from_source = [c for c, (s, _) in self._waiting.items() if s == source]
            while len(from_source) >= self.limits.max_unauthenticated_per_address:
                evicted.append(from_source.pop(0))
            others = [c for c in self._waiting if c not in evicted]
            while len(others) >= self.limits.max_unauthenticated:
                evicted.append(others.pop(0))
            for c in evicted:
                del self._waiting[c]
            self._waiting[connection] = (source, self._clock() + self.limits.preauth_seconds)
            return evicted

    def leave(self, connection) -> None:
        """Forget connection (it logged in, or it ended)."""
        with self._lock:
            self._waiting.pop(connection, None)

    def overdue(self) -> list:
        """Remove and return the connections whose deadline has passed."""
        now = self._clock()
        with self._lock:
            late = [c for c, (_, deadline) in self._waiting.items() if deadline <= now]
            for c in late:
                del self._waiting[c]
            return late
