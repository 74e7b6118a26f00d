"""The watcher ignores exactly what borg leaves out: Exclusions compared with
`borg create --dry-run --list` on the same tree, patterns, markers and cache tags."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from homesync.agent.exclusions import CACHEDIR_SIGNATURE, DEFAULT_MARKERS, Exclusions
from homesync.borg import borg_executable
from homesync.config import MARKERS, AgentConfig, Paths

TREE = [
    ".cache/fontconfig/x", ".local/share/Trash/files/old.txt", ".local/share/keyrings/login",
    ".local/state/homesync/agent.json", ".config/homesync/config.toml", ".config/app/settings.ini",
    ".thumbnails/normal/a.png", "Documents/report.txt", "Documents/.cache/kept.txt",
    "Documents/[draft] notes?.md", "Videos/raw/take1.mov", "Videos/cut/final.mp4",
    "src/app/node_modules/left/index.js", "src/app/main.py", "src/app/build/.nobackup", "src/app/build/out.o",
    "src/cache/CACHEDIR.TAG", "src/cache/blob", "src/faketag/CACHEDIR.TAG", "src/faketag/kept",
    "Downloads/big.iso", "Downloads/deep/big.iso", "notes.tmp", "a b/c d.txt",
]


def _make_tree(root: Path) -> None:
    for relative in TREE:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative == "src/cache/CACHEDIR.TAG":
            path.write_bytes(CACHEDIR_SIGNATURE + b"\n")
        else:
            path.write_text(relative)


def _borg_excluded(source: Path, repo: Path, patterns: list[str], markers: tuple[str, ...]) -> set[str]:
    """Return the relative paths borg's dry run reports as excluded ("x")."""
    env = {**os.environ, "BORG_PASSPHRASE": "", "BORG_BASE_DIR": str(repo.parent / "borg-base")}
    subprocess.run([borg_executable(), "init", "--encryption", "none", str(repo)], env=env, check=True,
                   capture_output=True)
    argv = [borg_executable(), "create", "--list", "--dry-run", "--exclude-caches"]
    for marker in markers:
        argv += ["--exclude-if-present", marker]
    for pattern in patterns:
        argv += ["--exclude", pattern]
    out = subprocess.run([*argv, f"{repo}::check", "."], cwd=source, env=env, check=True, capture_output=True,
                         text=True).stderr
    return {line[2:] for line in out.splitlines() if line.startswith("x ")}


@pytest.mark.parametrize("extra", [
    [],
    ["sh:**/node_modules", "sh:Videos/raw/", "fm:*.tmp", "pp:Downloads/deep", "re:\\.iso$"],
])
def test_same_exclusions_as_the_backup(tmp_path, extra):
    home = tmp_path / "home"
    _make_tree(home)
    paths = Paths(home / ".config/homesync", home / ".local/share/homesync", home / ".local/state/homesync",
                  home / ".cache/homesync")
    config = AgentConfig(server="127.0.0.1:1", fingerprint="SHA256:x", user="joe", machine_id="0" * 16,
                         machine_name="Joe's Thinkpad", source=home, exclude=tuple(extra))
    patterns = config.exclusion_patterns(paths)
    assert MARKERS == DEFAULT_MARKERS
    excluded_by_borg = _borg_excluded(home, tmp_path / "repo", patterns, MARKERS)
    exclusions = Exclusions(paths.own(), source=home, patterns=patterns, markers=MARKERS)

    mismatches = []
    for directory, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, home)
            parts = relative.split(os.sep)
            by_borg = any("/".join(parts[:i]) in excluded_by_borg for i in range(1, len(parts) + 1))
            ours = exclusions.excludes(path, is_dir=name in dirs)
            if by_borg != ours:
                mismatches.append((relative, by_borg, ours))
    assert mismatches == []
    assert {".cache", "src/cache", "src/app/build"} <= excluded_by_borg  # not vacuous
