"""What paramiko's transport thread logs, at our levels: it logs at ERROR, with a
traceback, a client closing its connection (a peer reset) and a TCP health check that
never sent an SSH banner, which are neither errors nor ours to explain at length.
"""

from __future__ import annotations

import logging

# Errors of the peer's socket that only say it went away.
_PEER_GONE = ("Connection reset by peer", "Broken pipe", "Connection timed out", "No route to host")
_BANNER = "Error reading SSH protocol banner"


def level_for(level: int, message: str) -> int:
    """Given the level paramiko chose for one transport message, return ours: a peer gone
    or a connection that never spoke SSH is DEBUG (the endpoint says it in one line), any
    other failure of a connection a WARNING, paramiko's own bugs stay ERROR."""
    if level < logging.ERROR:
        return level
    if message.startswith("Socket exception: ") and any(gone in message for gone in _PEER_GONE):
        return logging.DEBUG
    if message.startswith("Exception (server): "):
        return logging.DEBUG if _BANNER in message else logging.WARNING
    return level


def traceback_level(after: int) -> int:
    """Return the level of a traceback paramiko logs after a message mapped to `after`:
    kept beside an ERROR (a bug to report), DEBUG otherwise."""
    return after if after >= logging.ERROR else logging.DEBUG
