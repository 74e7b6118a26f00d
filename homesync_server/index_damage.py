"""A damaged index met while `serve` runs (pages overwritten under it), or one whose
database does not answer (PostgreSQL stopped): sessions are refused with one clear
line, the log says what to do (at most once a minute), and serve goes on; exiting
would only turn into a restart loop. An unavailable index heals by itself: the next
session that finds it answering again goes through."""

from __future__ import annotations

import logging
import threading
import time

from homesync.errors import IndexDamagedError, IndexUnavailableError, ServerIndexDamagedError

logger = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 60.0
CLIENT_LINE = ServerIndexDamagedError(
    "the backup server cannot read its index (it is damaged), so it refuses backups and restores for now",
    "nothing to do on this computer: the server's admin must rebuild the index; homesync tries again later")

_lock = threading.Lock()
_last_logged = [float("-inf")]


# What the index raises when it cannot serve a session (serve catches these).
UNUSABLE = (IndexDamagedError, IndexUnavailableError)


def refused(error: IndexDamagedError | IndexUnavailableError,
            what: str) -> ServerIndexDamagedError | IndexUnavailableError:
    """Log (at most once every LOG_EVERY_SECONDS) that the index is damaged or does not
    answer and what to do; return the error the client is told (without the server's
    paths: an unavailable index's line names none)."""
    if isinstance(error, IndexUnavailableError):
        if _due():
            logger.error("%s, refusing %s until it answers (%s)", error.message, what, error.hint)
        return error
    if _due():
        logger.error("%s, refusing %s until it is rebuilt (%s)", error.message, what, error.hint)
    return CLIENT_LINE


def _due() -> bool:
    now = time.monotonic()
    with _lock:
        due = now - _last_logged[0] >= LOG_EVERY_SECONDS
        if due:
            _last_logged[0] = now
    return due
