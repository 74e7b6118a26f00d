"""Planning a restore from an archive's listing before anything is written: the order
in which parts of the home come back (settings first, then documents, then the rest),
the tally each part must verify against, and a preview of what would happen to the
target. Reads the target, never writes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from homesync import borg

DOCUMENT_DIRS = ("Documents", "Desktop")
SETTINGS, DOCUMENTS, REST = "settings", "documents", "everything else"


@dataclass(frozen=True)
class Phase:
    """One extraction: the top-level names it restores (`paths`), or, for the last one,
    everything but the names restored before it (`excludes`). A selection (`--path`)
    names borg patterns instead, and its listing holds exactly what it restores."""

    name: str
    paths: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    selection: bool = False

    def holds(self, path: str) -> bool:
        """Return whether an archive path is restored by this phase."""
        if self.selection:
            return True
        top = top_level(path)
        return top in self.paths if self.paths else top not in self.excludes


def selection(paths: list[str]) -> Phase:
    """Given paths inside the archive (at any depth), return the one phase restoring
    them: each path with everything below it (`pp:`, literal: no glob), and each of
    their parent folders itself (`pf:`), so that the folders come back with their own
    mode and times and the extracted tree is exactly what the listing names."""
    parents = sorted(parents_of(paths))
    return Phase("selected", paths=tuple(f"pp:{p}" for p in paths),
                 patterns=tuple(f"+pf:{p}" for p in parents), selection=True)


def parents_of(paths: list[str]) -> set[str]:
    """Return every folder above the given archive paths."""
    return {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}


def as_listed(path: str) -> str:
    """Return a path the way borg lists it: bytes that are not UTF-8 become "?"."""
    return path.encode("utf-8", "replace").decode("utf-8")


def missing(paths: list[str], items: list[dict]) -> list[str]:
    """Return the selected paths that are not in the listing."""
    listed = {i["path"] for i in items}
    return [p for p in paths if as_listed(p) not in listed]


def top_level(path: str) -> str:
    return path.split("/", 1)[0]


def _group(name: str) -> str:
    # borg lists names that are not UTF-8 with "?": only the last phase, which works by
    # exclusion, can restore them.
    if "?" in name:
        return REST
    if name.startswith("."):
        return SETTINGS
    return DOCUMENTS if name in DOCUMENT_DIRS else REST


def plan_phases(items: list[dict]) -> list[Phase]:
    """Given the archive's listing, return the phases in order: dotfiles and settings,
    then documents, then the rest. Hard-linked names never straddle two phases (borg
    would restore them as separate files)."""
    groups = {top_level(i["path"]): _group(top_level(i["path"])) for i in items if i["path"] != "."}
    links = [(top_level(i["path"]), top_level(i["source"])) for i in items
             if i["type"] == "-" and i.get("source")]
    changed = True
    while changed:
        changed = False
        for a, b in links:
            if groups.get(a) != groups.get(b):
                for name in (a, b):
                    if groups.get(name) != REST:
                        groups[name] = REST
                        changed = True
    phases = [Phase(name, paths=tuple(sorted(n for n, g in groups.items() if g == name)))
              for name in (SETTINGS, DOCUMENTS)]
    phases = [p for p in phases if p.paths]
    done = tuple(n for p in phases for n in p.paths)
    return phases + [Phase(REST, excludes=done)]


def expected_tally(items: list[dict]) -> dict:
    """Return what extracting these listed items must produce: counts by kind, and the
    bytes of distinct files (None when a hard link's first name is not among them)."""
    tally = {"d": 0, "-": 0, "l": 0, "other": 0, "bytes": 0}
    first_names = {i["path"] for i in items if i["type"] == "-" and not i.get("source")}
    unknown = False
    for item in items:
        if item["path"] == ".":
            continue
        kind = item["type"] if item["type"] in tally else "other"
        tally[kind] += 1
        if kind == "-" and not item.get("source"):
            tally["bytes"] += item["size"]
        elif kind == "-":
            unknown = unknown or item["source"] not in first_names
    if unknown:
        tally["bytes"] = None
    return tally


_KINDS = {stat.S_IFDIR: "d", stat.S_IFREG: "-", stat.S_IFLNK: "l"}


def staged_tally(root: Path) -> dict:
    """Return the same tally for a directory tree on disk (hard links counted once)."""
    tally, inodes = {"d": 0, "-": 0, "l": 0, "other": 0, "bytes": 0}, set()
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
            tally[kind] += 1
            if kind == "-" and (st.st_dev, st.st_ino) not in inodes:
                inodes.add((st.st_dev, st.st_ino))
                tally["bytes"] += st.st_size
    return tally


@dataclass
class Preview:
    """What a restore would do to the target."""

    new_entries: int = 0
    new_bytes: int = 0
    identical: int = 0
    kept_aside: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    total_bytes: int = 0


def preview(items: list[dict], target: Path, protected: list[str]) -> Preview:
    """Given the listing and the target, return what a restore would write, skip and
    keep aside. Files count as identical when size and mtime (µs) match; the restore
    itself compares content."""
    result = Preview()
    for item in items:
        path = item["path"]
        if path == ".":
            continue
        if any(path == p or path.startswith(p + "/") for p in protected):
            result.protected.append(path)
            continue
        size = item.get("size", 0) if item["type"] == "-" else 0
        result.total_bytes += size
        try:
            local = os.lstat(target / path)
        except FileNotFoundError:
            result.new_entries += 1
            result.new_bytes += size
            continue
        except NotADirectoryError:
            continue  # under a local file that is itself kept aside
        if _same(item, local):
            result.identical += item["type"] != "d"
        else:
            result.kept_aside.append(path)
            result.new_bytes += size
    return result


def _same(item: dict, local: os.stat_result) -> bool:
    kind = _KINDS.get(stat.S_IFMT(local.st_mode), "other")
    if kind != item["type"]:
        return False
    if kind != "-":
        return True
    return local.st_size == item["size"] and abs(local.st_mtime_ns - borg.listed_mtime_ns(item)) < 1000
