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

from homesync import borg, tally

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
    merges: tuple["Phase", ...] = ()  # phases one extraction restores, merged one after the other

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


def joined(phases: list[Phase]) -> list[Phase]:
    """Given the phases still to restore, return what to extract: settings and documents
    in one extraction, merged one after the other (a borg run costs more than the
    settings themselves: docs/architecture.md), then the rest. The joint extraction is
    never split, so that it can be the one started before the listing (EARLY_PATHS)."""
    early = [p for p in phases if p.name in (SETTINGS, DOCUMENTS)]
    if not early:
        return phases
    joint = Phase(", ".join(p.name for p in early), paths=tuple(n for p in early for n in p.paths),
                  merges=tuple(early))
    return [joint] + [p for p in phases if p not in early]


# Settings and documents as borg paths that need no listing, and the rest as what those
# paths exclude: a full restore starts extracting them while the archive is still being
# listed (docs/architecture.md). Each is (paths, excludes) for `borg extract`.
EARLY_PATHS = (r"re:^\.[^/]", *(f"pp:{name}" for name in DOCUMENT_DIRS))
EARLY_SETTINGS_AND_DOCUMENTS = (EARLY_PATHS, ())
EARLY_REST = ((), EARLY_PATHS)


def early_names(items: list[dict]) -> set[str]:
    """Return the top-level names that EARLY_PATHS select in an archive so listed."""
    tops = {top_level(i["path"]) for i in items} - {"."}
    return {top for top in tops if top.startswith(".") or top in DOCUMENT_DIRS}


def early(jobs: int, size: int | None = None) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Return the extractions a full restore starts before its listing: settings and
    documents, and the rest with one extraction, or with two where it stays one part:
    an archive of `size` bytes (from the index; None: not known) too small for its rest
    to be split (split, MIN_PART_BYTES). A rest started early and then split is stopped:
    its start before the listing pays less than the split (docs/architecture.md)."""
    if jobs <= 1 or (jobs == 2 and (size is None or size < 2 * MIN_PART_BYTES)):
        return [EARLY_SETTINGS_AND_DOCUMENTS, EARLY_REST]
    return [EARLY_SETTINGS_AND_DOCUMENTS]


def extracts_early(part: Phase, selection: tuple[tuple[str, ...], tuple[str, ...]], items: list[dict]) -> bool:
    """Return whether a part restores exactly what an early extraction selects: the joint
    part of settings and documents, or the whole rest, when no hard link or name borg
    cannot list in UTF-8 moved a settings or documents name into the rest."""
    names = early_names(items)
    if selection == EARLY_SETTINGS_AND_DOCUMENTS:
        return bool(part.merges) and set(part.paths) == names
    return part.name == REST and not part.paths and set(part.excludes) == names


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


def staged_tally(root: Path) -> dict:
    """Return the same tally for a directory tree on disk (hard links' bytes counted once)."""
    found = tally.walk(root)
    return {**{kind: found.kinds[kind] for kind in ("d", "-", "l", "other")}, "bytes": found.bytes}


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
    kind = tally.KINDS.get(stat.S_IFMT(local.st_mode), "other")
    if kind != item["type"]:
        return False
    if kind != "-":
        return True
    return local.st_size == item["size"] and abs(local.st_mtime_ns - borg.listed_mtime_ns(item)) < 1000


# Splitting a phase into parts that several `borg extract` runs restore at once.
ENTRY_WEIGHT = 128 << 10  # what extracting one entry costs beyond its bytes, in bytes (docs/architecture.md)
# Another part pays only for files' bytes: every extraction reads all of the archive's item
# metadata, so many small entries do not get cheaper split (docs/architecture.md).
MIN_PART_BYTES = 128 << 20


def weight(phase: Phase, items: list[dict]) -> int:
    """Return what extracting a phase costs, in bytes: its distinct files' bytes, plus
    ENTRY_WEIGHT an entry."""
    return sum(w for _, w, _ in _link_groups(phase, items))


def split(phase: Phase, items: list[dict], parts: int, busy: tuple[int, ...] = ()) -> list[Phase]:
    """Given a phase, the listing and how many extractions may run at once, return the
    phase as up to `parts` phases of the same name restoring disjoint sets of its
    top-level names, balanced by weight (bytes, plus ENTRY_WEIGHT an entry), at most
    one part per MIN_PART_BYTES of its files. `busy`: the weight some of those
    extractions carry before this phase (settings and documents); the parts for the
    idle extractions come first and a busy one's last, so that each extraction, taking
    the next part when it is free, ends at about the same time. Names joined by hard
    links stay in one part. A phase working by exclusion keeps one part that does,
    last: it restores "." and the names borg cannot list in UTF-8."""
    if phase.selection or phase.merges or parts <= 1:
        return [phase]
    units = _link_groups(phase, items)
    count = min(parts, len(units), max(1, sum(b for _, _, b in units) // MIN_PART_BYTES))
    if count <= 1:
        return [phase]
    loads = sorted([*busy, *[0] * max(0, parts - len(busy))])[:count]  # the extractions free first
    bins: list[tuple[int, list[str]]] = [(load, []) for load in loads]
    for names, weighs, _ in sorted(units, key=lambda u: (-u[1], u[0])):
        lightest = min(range(count), key=lambda b: bins[b][0])
        bins[lightest] = (bins[lightest][0] + weighs, bins[lightest][1] + names)
    groups = [sorted(names) for _, names in bins if names]
    if len(groups) <= 1:
        return [phase]
    if not phase.paths:
        # the part by exclusion takes what only it can restore: names listed with "?"
        last = next((i for i, g in enumerate(groups) if any("?" in n for n in g)), len(groups) - 1)
        others = [g for i, g in enumerate(groups) if i != last]
        excluded = tuple(sorted({*phase.excludes, *(n for g in others for n in g)}))
        return [Phase(phase.name, paths=tuple(g)) for g in others] + [Phase(phase.name, excludes=excluded)]
    return [Phase(phase.name, paths=tuple(g)) for g in groups]


def _link_groups(phase: Phase, items: list[dict]) -> list[tuple[list[str], int, int]]:
    """Return the phase's top-level names joined into groups by hard links, each
    group with its weight and its files' bytes; names borg lists with "?" form one
    group (only the part by exclusion can restore them)."""
    weight: dict[str, int] = {}
    size_of: dict[str, int] = {}
    for item in items:
        if item["path"] != "." and phase.holds(item["path"]):
            top = top_level(item["path"])
            size = item.get("size", 0) if item["type"] == "-" and not item.get("source") else 0
            weight[top] = weight.get(top, 0) + size + ENTRY_WEIGHT
            size_of[top] = size_of.get(top, 0) + size
    for name in phase.paths:
        weight.setdefault(name, ENTRY_WEIGHT)
    leader = {name: name for name in weight}

    def find(name: str) -> str:
        while leader[name] != name:
            leader[name] = leader[leader[name]]
            name = leader[name]
        return name

    unlisted = [n for n in weight if "?" in n]
    pairs = [(top_level(i["path"]), top_level(i["source"])) for i in items if i["type"] == "-" and i.get("source")]
    pairs += list(zip(unlisted, unlisted[1:]))
    for a, b in pairs:
        if a in leader and b in leader:
            leader[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for name in weight:
        groups.setdefault(find(name), []).append(name)
    return [(sorted(names), sum(weight[n] for n in names), sum(size_of.get(n, 0) for n in names))
            for names in groups.values()]
