"""Rate limiting of failed logins, per user name and per source address: after a few
failures, further attempts are refused without asking the directory, for a time that
doubles with each further failure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

FREE_FAILURES = 5
WINDOW = 600.0
BASE_BLOCK = 30.0
MAX_BLOCK = 3600.0


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    blocked_until: float = 0.0


class LoginLimiter:
    """Counts failed logins and says when to refuse without checking."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def blocked(self, user: str, source: str) -> bool:
        """Return whether a login for user from source must be refused now."""
        now = self._clock()
        with self._lock:
            return any(self._records.get(k, _Record()).blocked_until > now for k in _keys(user, source))

    def failed(self, user: str, source: str) -> None:
        """Count one failed login."""
        now = self._clock()
        with self._lock:
            for key in _keys(user, source):
                record = self._records.setdefault(key, _Record())
                record.failures = [t for t in record.failures if now - t < WINDOW] + [now]
                excess = len(record.failures) - FREE_FAILURES
                if excess >= 0:
                    record.blocked_until = now + min(MAX_BLOCK, BASE_BLOCK * 2 ** excess)

    def succeeded(self, user: str, source: str) -> None:
        """Forget the user's failures (not the address's: one success does not clear a scan)."""
        with self._lock:
            self._records.pop("user:" + user, None)


def _keys(user: str, source: str) -> tuple[str, str]:
    return "user:" + user, "addr:" + source
