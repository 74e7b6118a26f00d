"""Exclusions shared with the backup: borg patterns, own paths, markers and cache tags."""

from __future__ import annotations

import os

from homesync.agent.exclusions import CACHEDIR_SIGNATURE, Exclusions


def test_patterns_are_relative_to_the_source(tmp_path):
    excl = Exclusions(source=tmp_path, patterns=["sh:.cache", "sh:**/node_modules", "Videos/raw"])
    assert excl.excludes(str(tmp_path / ".cache"), is_dir=True)
    assert excl.excludes(str(tmp_path / ".cache/x/y"))
    assert not excl.excludes(str(tmp_path / "Documents/.cache/x"))  # sh:.cache is top-level only
    assert excl.excludes(str(tmp_path / "src/app/node_modules/x/index.js"))
    assert excl.excludes(str(tmp_path / "Videos/raw/take1.mov"))
    assert not excl.excludes(str(tmp_path / ".cache2/x"))
    assert not excl.excludes(str(tmp_path / "Documents/report.txt"))


def test_absolute_paths_exclude_themselves_and_below(tmp_path):
    excl = Exclusions([tmp_path / ".config/homesync"], source=tmp_path)
    assert excl.excludes(str(tmp_path / ".config/homesync/config.toml"))
    assert not excl.excludes(str(tmp_path / ".config/homesync2"))


def test_markers_and_cache_tags(tmp_path):
    (tmp_path / "build/deep").mkdir(parents=True)
    (tmp_path / "build/.nobackup").touch()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache/CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n# a cache\n")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake/CACHEDIR.TAG").write_text("not a real tag")
    excl = Exclusions(source=tmp_path)
    assert excl.excludes(str(tmp_path / "build/deep/file"))
    assert excl.excludes(str(tmp_path / "build"), is_dir=True)
    assert excl.excludes(str(tmp_path / "cache/blob"))
    assert not excl.excludes(str(tmp_path / "fake/file"))
    assert excl.excludes_dir(str(tmp_path / "cache")) and not excl.excludes_dir(str(tmp_path / "fake"))
    assert not Exclusions(source=tmp_path, exclude_caches=False).excludes(str(tmp_path / "cache/blob"))


def test_a_marker_created_later_is_noticed(tmp_path):
    (tmp_path / "project").mkdir()
    excl, path = Exclusions(source=tmp_path), str(tmp_path / "project/file")
    assert not excl.excludes(path)
    (tmp_path / "project/.nobackup").touch()
    os.utime(tmp_path / "project", ns=(1, 1))  # a new mtime, even on coarse-grained file systems
    assert excl.excludes(path)
