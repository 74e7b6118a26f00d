"""What a tree on disk holds, counted the way a restore and a drill check it: entries
by kind (every name), regular files one per inode (as `borg create` counts them, so a
hard link once) with their bytes, and a relative path for each such inode.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

KINDS = {stat.S_IFDIR: "d", stat.S_IFREG: "-", stat.S_IFLNK: "l"}  # anything else is "other"


@dataclass
class Tally:
    """A tree's entries by kind ("d", "-", "l", "other"; each name, hard links too), its
    regular files one per inode, their bytes, and one relative path per such inode (only
    names that are valid UTF-8: borg's JSON cannot name the others exactly)."""

    kinds: Counter = field(default_factory=Counter)
    files: int = 0
    bytes: int = 0
    paths: list[str] = field(default_factory=list)


def walk(root: Path) -> Tally:
    """Given a directory, return the tally of everything below it (not itself)."""
    tally, inodes = Tally(), set()
    top = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = KINDS.get(stat.S_IFMT(st.st_mode), "other")
            tally.kinds[kind] += 1
            if kind != "-" or (st.st_dev, st.st_ino) in inodes:
                continue
            inodes.add((st.st_dev, st.st_ino))
            tally.files += 1
            tally.bytes += st.st_size
            try:
                tally.paths.append(os.path.relpath(path, top).decode("utf-8"))
            except UnicodeDecodeError:
                pass  # it still counts
    return tally
