"""homesync's own JSON state files (agent record, last backup, restore progress and
throughput): read so that damage heals by itself. A file that is not what it should be
(garbage, truncated, wrong shape) is set aside as <name>.damaged, said once in the log,
and noted for `status` and the next backup's warnings; the caller starts afresh."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

_notes: list[str] = []
_lock = threading.Lock()


def read(path: Path, valid: Callable[[Any], bool]) -> Any | None:
    """Return the JSON content of path, or None if it is missing or damaged (valid()
    false, not JSON, not UTF-8): a damaged file is set aside first."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        content = json.loads(raw)
        if valid(content):
            return content
        why = "not what homesync wrote there"
    except ValueError as e:  # JSON and UTF-8 errors both
        why = "empty" if not raw.strip() else f"not JSON: {e}"
    set_aside(path, why)
    return None


def set_aside(path: Path, why: str) -> None:
    """Move a damaged state file to <name>.damaged (replacing an older one) and say so once."""
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another reader set it aside first
    note = f"the state file {path} was damaged ({why[:120]}); it was set aside as {aside.name} and started afresh"
    log.warning("%s", note)
    with _lock:
        _notes.append(note)


def notes() -> list[str]:
    """Return what was set aside in this process and not yet taken."""
    with _lock:
        return list(_notes)


def take_notes() -> list[str]:
    """Return what was set aside in this process, and forget it (it was said)."""
    with _lock:
        taken, _notes[:] = list(_notes), []
    return taken


def number(value: Any, optional: bool = False) -> bool:
    """Return whether value is a finite int or float (or None, if optional); bool is not."""
    if value is None:
        return optional
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")
