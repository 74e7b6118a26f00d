"""Writing files so that nothing is ever half-written: through a temporary file in the
same directory, flushed to disk, then renamed over the old one; and the lock file that
lets only one process at a time do a job. Shared by the agent and the server."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write data to path atomically, with `mode` from the first byte (0600: only its
    owner reads it); create the parent directory (0700) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, data, mode)


def write_atomically(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write data to path through a temporary file in the same directory and a rename, so
    that no reader ever sees half a file; `mode` is created from the first byte (the umask
    still applies); when durable, fsync before the rename. Raise OSError if it cannot."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:  # O_EXCL: a link planted at the temporary name is never followed
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:  # left by a killed process that had our pid
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # in a directory we may not enter, unlink fails too
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def only_one(lock: Path, busy: Exception) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created 0600 in a 0700 directory) for
    as long as the block runs; raise `busy` at once if another process holds it. The
    kernel lets go of it when the holder ends, however it ends; children never inherit it."""
    lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield
    finally:
        os.close(fd)
