"""Getting one file back: `restore --path` at any depth, `find` by a fragment of the
name, `versions` of one file, and one version restored beside the current one, all
through the real server and real borg; bad input gives one line and writes nothing."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.support.homesync_server import PASSWORDS
from tests.support.processes import chown_tree
from tests.support.trees import snapshot

OWN = (".cache", ".config", ".local")
DEEP = "Documents/projects/2026/q4/budget/drafts/old/report.odt"  # depth 8
ODD = os.fsdecode(b"Music/caf\xe9 [live]/track *1?.ogg")           # not UTF-8, glob characters
NAMES = {"notes.txt": b"top level\n", "Photos/2026/beach/img[1].jpg": b"\xff\xd8 pretend jpeg " * 50,
         DEEP: b"version 1\n", ODD: b"odd bytes " * 10}


def _write(home, rel: str, data: bytes, mtime: int | None = None) -> None:
    path = os.path.join(os.fsencode(home), os.fsencode(rel))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _outside_own(home, without: bytes = b""):
    """Return home's entries outside homesync's own directories (and without the
    subtree `without`); directories without their mtime, which any new entry changes."""
    tree = snapshot(home, exclude=OWN)
    tree.pop(b".", None)
    for rel in [k for k in tree if without and (k == without or k.startswith(without + b"/"))]:
        del tree[rel]
    for entry in tree.values():
        if entry["kind"] == "dir":
            entry.pop("mtime_ns")
    return tree


@pytest.fixture(scope="module")
def laptop(homesync_server, computer_factory_module):
    """joe's laptop, backed up five times with DEEP changed before each backup; yields
    (computer, the five contents of DEEP)."""
    computer = computer_factory_module()
    for rel, data in NAMES.items():
        _write(computer.home, rel, data, mtime=1_700_000_000)
    contents = []
    for n in range(1, 6):
        data = f"report, version {n}\n".encode() * n
        _write(computer.home, DEEP, data, mtime=1_700_000_000 + n * 3600)
        contents.append(data)
        chown_tree(computer.home)
        if n == 1:
            assert computer.enroll(homesync_server, "joe", "Find laptop").returncode == 0
        assert computer.json("backup")["result"] == "success"
        time.sleep(1.1)  # archive names carry seconds
    return computer, contents


@pytest.mark.parametrize("rel", ["notes.txt", "Photos/2026/beach/img[1].jpg", DEEP, ODD, "Photos/2026"])
def test_restore_path_at_any_depth_comes_back_bit_for_bit(laptop, rel):
    computer, _ = laptop
    before = _outside_own(computer.home)
    victim = os.path.join(os.fsencode(computer.home), os.fsencode(rel))
    moved = victim + b".moved-away"
    os.rename(victim, moved)
    try:
        done = computer.run("restore", "--machine", "Find laptop", "--path", rel, "--json")
        assert done.returncode == 0, done.stderr
        assert _outside_own(computer.home, without=os.fsencode(rel) + b".moved-away") == before
    finally:
        if os.path.lexists(moved):
            import shutil
            if os.path.isdir(victim):
                shutil.rmtree(victim)
            elif os.path.lexists(victim):
                os.unlink(victim)
            os.rename(moved, victim)
