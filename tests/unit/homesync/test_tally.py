"""One count of a tree on disk for the restore's check and the drill's: every name by
kind, regular files once per inode with their bytes, a path for each."""

from __future__ import annotations

import os

from homesync.restore_plan import staged_tally
from homesync.tally import walk


def test_names_by_kind_and_inodes_once(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "a").write_bytes(b"hello\n")
    os.link(tmp_path / "a", tmp_path / "d" / "a-again")
    (tmp_path / "s").symlink_to("a")
    os.mkfifo(tmp_path / "f")
    found = walk(tmp_path)
    assert dict(found.kinds) == {"d": 1, "-": 2, "l": 1, "other": 1}  # both names of the hard link
    assert (found.files, found.bytes, len(found.paths)) == (1, 6, 1)  # ... but one file, its bytes once
    assert staged_tally(tmp_path) == {"d": 1, "-": 2, "l": 1, "other": 1, "bytes": 6}
