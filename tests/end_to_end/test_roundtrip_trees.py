"""Awkward trees round-trip through the real server bit for bit: names that are not
UTF-8, newlines and quotes in names, hard links, symlinks (dangling too), xattrs,
modes, nanosecond mtimes, empty directories."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.support.homesync_client import Computer
from tests.support.processes import chown_tree, private_dir, remove
from tests.support.trees import (FileNode, assert_same_tree, build_tree, kitchen_sink, snapshot,
                                 tree_specs)


def _without_xattrs_on_read_only_files(spec):
    """borg 1.4 sets a file's mode before its xattrs, so an ordinary user cannot restore
    xattrs on a read-only file: see test_read_only_file_with_xattrs_is_reported."""
    for node in spec.paths().values():
        if isinstance(node, FileNode) and not node.mode & 0o200:
            node.xattrs = {}
    return spec


@pytest.fixture(scope="module")
def enrolled(homesync_server):
    computer = Computer(private_dir("hs-trees-"))
    assert computer.enroll(homesync_server, "joe", "Tree Laptop").returncode == 0
    config = computer.home / ".config/homesync/config.toml"
    config.write_text(config.read_text().replace('# source = "~"', f'source = "{computer.home}/tree"'))
    yield computer
    remove(computer.home)


# Every awkward case at once (the kitchen sink) each run, and a few random trees: each
# example is a backup and a restore through the server. Random trees are explored more
# widely by tests/integration/test_borg_roundtrip_trees.py, borg alone.
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=tree_specs(max_depth=3, max_children=5).map(_without_xattrs_on_read_only_files))
@example(spec=_without_xattrs_on_read_only_files(kitchen_sink()))
def test_any_tree_restores_bit_for_bit(enrolled, spec):
    source, target = enrolled.home / "tree", enrolled.home / "restored"
    for path in (source, target):
        shutil.rmtree(path, ignore_errors=True)
    build_tree(source, spec)
    chown_tree(enrolled.home)
    backup = enrolled.json("backup")
    assert backup["result"] == "success"
    restored = enrolled.json("restore", "--machine", "Tree Laptop", "--archive", backup["name"],
                             "--target", str(target))
    assert restored["kept_aside"] == []
    expected, found = snapshot(source), snapshot(target)
    assert_same_tree(expected, found, ignore_root=True)
    assert expected[b"."]["mode"] == found[b"."]["mode"]
    assert abs(expected[b"."]["mtime_ns"] - found[b"."]["mtime_ns"]) < 1000


def test_read_only_file_with_xattrs_is_reported(enrolled):
    """The known limitation is never silent: the restore names the file and warns."""
    source, target = enrolled.home / "tree", enrolled.home / "restored"
    for path in (source, target):
        shutil.rmtree(path, ignore_errors=True)
    source.mkdir()
    (source / "locked.pdf").write_bytes(b"%PDF")
    import os
    os.setxattr(source / "locked.pdf", "user.xdg.origin.url", b"https://example.org/a.pdf")
    os.chmod(source / "locked.pdf", 0o444)
    chown_tree(enrolled.home)
    backup = enrolled.json("backup")
    restored = enrolled.json("restore", "--machine", "Tree Laptop", "--archive", backup["name"], "--target", str(target))
    assert (target / "locked.pdf").read_bytes() == b"%PDF"
    assert "locked.pdf: extended attribute user.xdg.origin.url could not be set, the file being read-only: " \
           "[Errno 13] Permission denied" in restored["warnings"], restored["warnings"]
