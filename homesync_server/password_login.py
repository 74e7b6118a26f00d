"""One password login, from the name as typed to the session's principal: counted in
the index before the password is checked (logins.py's rules), checked by at most
CONCURRENT_CHECKS at a time (scrypt costs 16 MiB each), and audited.
"""

from __future__ import annotations

import logging
import threading
import time

from homesync import names
from homesync.errors import AuthenticationError, HomesyncError, IdentityUnavailableError, TooManyLoginsError
from homesync_server import logins
from homesync_server.dispatch import REFUSED, USER, Principal
from homesync_server.identity import IdentityBackend
from homesync_server.index_store import LoginThrottle

logger = logging.getLogger(__name__)
# Password checks running at once (each local one is ~16 MiB of scrypt); the others
# wait up to CHECK_WAIT seconds for a turn, then are refused as "busy".
CONCURRENT_CHECKS = 2
CHECK_WAIT = 10.0


class PasswordLogins:
    """Decides who a password login is, or that it is refused and why."""

    def __init__(self, index: LoginThrottle, identity: IdentityBackend) -> None:
        self.index = index
        self.identity = identity
        self._checks = threading.BoundedSemaphore(CONCURRENT_CHECKS)

    def check(self, typed: str, password: str, source: str) -> Principal | None:
        """Given a user name as typed, a password and the source address, return the
        session's principal (a refused one, whose every action fails with the reason, when
        throttled or the directory is down), or None for a wrong name or password."""
        try:
            name = self.identity.canonical_name(names.user_name(typed))
        except HomesyncError:
            return None
        keys = logins.keys(name, source)
        verdict = self.index.throttle(keys, lambda r, now: _reserve(r, now, name, source), logins.forget_if_quiet)
        if not verdict.allowed:
            if verdict.events:  # once per burst, like the audit log
                logger.warning("logins for %r from %s refused until %s: %s limit reached", name, source,
                               time.strftime("%H:%M:%S", time.localtime(verdict.until)), verdict.kind)
            return Principal(REFUSED, name, error=verdict.error(time.time()))
        if not self._checks.acquire(timeout=CHECK_WAIT):
            self._release(keys)
            return Principal(REFUSED, name, error=TooManyLoginsError(
                "too many logins at once on the server", "try again in a minute"))
        try:
            person = self.identity.authenticate(typed, password)
        except AuthenticationError:
            self.index.audit("login_failed", name, source=source, reason=logins.REASON_WRONG)
            return None
        except IdentityUnavailableError as e:
            logger.warning("directory unavailable: %s", e.message)
            self._release(keys)
            return Principal(REFUSED, name, error=e)
        finally:
            self._checks.release()
        self.index.throttle(keys, lambda r, now: (None, logins.succeeded(*r, now)))
        return Principal(USER, person.name, admin=person.admin)

    def _release(self, keys: tuple[str, str]) -> None:
        self.index.throttle(keys, lambda r, now: (logins.released(*r), []))


def _reserve(records: list[logins.Record], now: float, name: str, source: str):
    """Reserve one attempt (Index.throttle's change): the verdict, and its events."""
    verdict = logins.reserve(*records, now, name, source)
    return verdict, verdict.events
