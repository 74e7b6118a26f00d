"""Periodic scans for trees that inotify cannot watch whole: a cheap per-directory digest
of names, sizes, modes and times, compared between scans to find what changed.
Memory is one small integer per directory, not one entry per file.
"""

from __future__ import annotations

import logging
import os
import stat

from homesync.agent.exclusions import Exclusions

log = logging.getLogger(__name__)

Digest = dict[str, int]


def tree_digest(root: str, exclusions: Exclusions) -> Digest:
    """Walk the tree (not following symlinks, skipping excluded parts) and return directory -> digest."""
    digests: Digest = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        entries = []
        try:
            with os.scandir(directory) as listing:
                for entry in listing:
                    item = _entry(entry, exclusions, pending)
                    if item is not None:
                        entries.append(item)
        except OSError as exc:
            log.debug("cannot scan %s: %s", directory, exc)
            continue
        entries.sort()
        digests[directory] = hash(tuple(entries))
    return digests


def _entry(entry: os.DirEntry, exclusions: Exclusions, pending: list[str]) -> tuple | None:
    """Return the digest item of one entry (queueing subdirectories), or None if excluded."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        if exclusions.excludes_dir(entry.path):
            return None
        pending.append(entry.path)
        # A directory's own times change with its entries, which its own digest covers.
        return (entry.name, st.st_mode, st.st_uid, st.st_gid)
    if exclusions.excludes_path(entry.path):
        return None
    return (entry.name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def changed_directories(before: Digest, after: Digest) -> list[str]:
    """Return the directories that appeared, vanished or changed between two digests."""
    changed = [d for d, digest in after.items() if before.get(d) != digest]
    return changed + [d for d in before if d not in after]
