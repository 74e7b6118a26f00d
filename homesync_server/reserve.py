"""Room to heal a full disk: a small reserve file beside the repositories, given up when
a backup filled the disk, so that the server can take borg's lock and delete the
segments that session left unfinished (borg cleans them only at its next write, which a
full disk never lets it reach), then put back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from homesync.errors import RepositoryLockedError
from homesync_server import rollback

logger = logging.getLogger(__name__)
RESERVE_NAME = ".homesync-reserve"
RESERVE_BYTES = 1 << 20  # borg's lock and roster need a few KiB; a megabyte leaves room to spare
LOCK_TIMEOUT = 30.0


def keep(repos: Path) -> None:
    """Make sure the reserve file exists beside the repositories (best effort: a disk
    already full gets one when space comes back)."""
    path = repos / RESERVE_NAME
    if path.exists() and path.stat().st_size >= RESERVE_BYTES:
        return
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * RESERVE_BYTES)  # written, not sparse: the blocks are really held
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        path.unlink(missing_ok=True)
        logger.warning("could not keep %s bytes in reserve in %s: %s", RESERVE_BYTES, repos, e.strerror)


def reclaim(repo: Path) -> int:
    """After a session of repo that met a full disk: give up the reserve, delete under
    borg's lock the segments written after the repository's last transaction, put the
    reserve back; return the bytes freed (0 when there was nothing to do)."""
    (repo.parent / RESERVE_NAME).unlink(missing_ok=True)
    freed = 0
    try:
        with rollback.locked(repo, LOCK_TIMEOUT):
            last = rollback.transaction(repo)
            if last is None:
                return 0
            for segment in unfinished(repo, last):
                freed += segment.stat().st_size
                segment.unlink()
    except (OSError, RepositoryLockedError) as e:
        logger.error("could not free the unfinished segments of %s after a full disk: %s", repo, e)
    finally:
        keep(repo.parent)
    if freed:
        logger.warning("freed %d bytes of unfinished segments in %s after a backup met a full disk", freed, repo)
    return freed


def unfinished(repo: Path, last: int) -> list[Path]:
    """Return repo's segment files numbered after transaction last (never committed)."""
    return sorted(p for p in (repo / "data").glob("*/*") if p.name.isdigit() and int(p.name) > last)
