"""What a drill checks in an archive's listing before extracting it: a client wrote the
archive, so its items are untrusted. Paths must be normalised and every listed parent a
directory; device nodes, FIFOs and sockets are left out; sizes come from the listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

SPECIAL_TYPES = {"c": "device node", "b": "device node", "p": "FIFO", "s": "socket"}
_KINDS = {"d": "directory", "-": "file", "l": "symlink", **SPECIAL_TYPES}
SHOWN = 5  # problems named in a failure line; the audit event keeps up to 20


@dataclass
class Vetting:
    """An archive's listing judged: reasons to refuse it (each an escape attempt or a
    corrupt archive), the special files to leave out, and its regular files' count and
    bytes (each hard-linked inode once)."""

    problems: list[str] = field(default_factory=list)
    specials: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


def path_problem(path: object, root_allowed: bool = False) -> str | None:
    """Return why path is not a normalised relative archive path, or None if it is
    ("." itself, the extraction root `borg create .` archives, only if root_allowed)."""
    if root_allowed and path == ".":
        return None
    if not isinstance(path, str) or not path:
        return "an empty path"
    if "\0" in path:
        return "a NUL byte in the path"
    if path.startswith("/"):
        return "an absolute path"
    if path.endswith("/"):
        return "a trailing slash"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "an empty, '.' or '..' component"
    return None


def vet_listing(items: Iterable[dict]) -> Vetting:
    """Given `borg list --json-lines` items of an archive, return its Vetting."""
    vetting, kinds = Vetting(), {}
    for item in items:
        path, kind = item.get("path"), item.get("type", "")
        problem = path_problem(path, root_allowed=kind == "d")
        if problem:
            vetting.problems.append(f"{path!r}: {problem}")
            continue
        previous = kinds.get(path)
        if previous is not None and "?" not in path:  # borg lists undecodable bytes as '?'
            vetting.problems.append(f"{path!r}: listed twice")
        kinds[path] = kind if previous in (None, "d") else previous  # a name that is ever not a directory
        if kind not in _KINDS:
            vetting.problems.append(f"{path!r}: an unknown item type {kind!r}")
        elif kind in SPECIAL_TYPES:
            vetting.specials.append(path)
        elif kind == "-":
            _count_file(vetting, item, path)
    for path in kinds:
        _check_parents(vetting, path, kinds)
    return vetting


def _count_file(vetting: Vetting, item: dict, path: str) -> None:
    source = item.get("source") or item.get("linktarget") or ""
    if source:  # a further name of a hard link: its source must be a plain path too
        problem = path_problem(source)
        if problem:
            vetting.problems.append(f"{path!r}: a hard link to {source!r}, {problem}")
        return
    vetting.files += 1
    vetting.bytes += max(int(item.get("size") or 0), 0)


def _check_parents(vetting: Vetting, path: str, kinds: dict[str, str]) -> None:
    """Add a problem if an ancestor of path is listed as anything but a directory."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        kind = kinds.get(parent, "d")
        if kind != "d":
            vetting.problems.append(f"{path!r}: below {parent!r}, a {_KINDS.get(kind, 'non-directory')}")
            return


def summary(problems: list[str]) -> str:
    """Return the first problems as one line, saying how many more there are."""
    shown = "; ".join(problems[:SHOWN])
    return shown + (f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else "")
