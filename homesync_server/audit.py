"""The audit log's hash chain: each event carries the hash of the one before it, so
that editing, deleting or reordering history is detectable. Pure: the index stores
the hashes, `audit verify` walks them through `verify`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

GENESIS = "0" * 64  # the prev_hash of the first event
FIELDS = ("id", "at", "actor", "action", "machine_id", "source", "detail", "prev_hash")


def canonical(row: dict[str, Any]) -> bytes:
    """Given an audit row (detail as its stored JSON text), return the bytes its hash
    covers: a compact JSON array of FIELDS, numbers normalised to what SQLite returns."""
    values = [int(row["id"]), float(row["at"]), row["actor"], row["action"], row["machine_id"],
              row["source"], row["detail"], row["prev_hash"]]
    return json.dumps(values, ensure_ascii=True, separators=(",", ":")).encode()


def event_hash(row: dict[str, Any]) -> str:
    """Given an audit row including its prev_hash, return its hash (hex SHA-256)."""
    return hashlib.sha256(canonical(row)).hexdigest()


def next_id(last_id: int | None, sequence: int | None) -> int:
    """Given the newest row's id and AUTOINCREMENT's high-water mark, return the next id
    (never reusing the id of a deleted row, so that deletions leave a visible gap)."""
    return max(last_id or 0, sequence or 0) + 1


def chain(rows: Iterable[dict[str, Any]], prev_hash: str = GENESIS) -> Iterable[tuple[int, str, str]]:
    """Given rows in id order without hashes, yield (id, prev_hash, hash) linking them
    after prev_hash (used by the migration that chains pre-existing events)."""
    for row in rows:
        linked = dict(row, prev_hash=prev_hash)
        digest = event_hash(linked)
        yield row["id"], prev_hash, digest
        prev_hash = digest


@dataclass(frozen=True)
class Break:
    """The first broken link: which row, what kind of damage, and a sentence about it."""

    row_id: int
    problem: str  # "edited", "deleted" or "reordered"
    message: str


@dataclass(frozen=True)
class Verdict:
    """The outcome of walking the chain."""

    checked: int
    head_id: int | None
    head_hash: str
    broken: Break | None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        broken = None if self.broken is None else {
            "row_id": self.broken.row_id, "problem": self.broken.problem, "message": self.broken.message}
        return {"intact": self.intact, "checked": self.checked, "head_id": self.head_id,
                "head_hash": self.head_hash, "broken": broken}


def verify(rows: Iterable[dict[str, Any]], find_hash: Callable[[str], int | None],
           sequence: int | None = None) -> Verdict:
    """Given every audit row in id order, a way to find which row carries a hash, and
    AUTOINCREMENT's high-water mark, return the verdict naming the first broken link."""
    prev_id, prev_hash, checked = 0, GENESIS, 0
    for row in rows:
        broken = _check_link(row, prev_id, prev_hash, find_hash) or _check_row(row)
        if broken:
            return Verdict(checked, prev_id or None, prev_hash, broken)
        prev_id, prev_hash, checked = row["id"], row["hash"], checked + 1
    if sequence and sequence > prev_id:
        missing = _span(prev_id + 1, sequence)
        return Verdict(checked, prev_id or None, prev_hash,
                       Break(sequence, "deleted", f"{missing} after row {prev_id} deleted (the newest events)"))
    return Verdict(checked, prev_id or None, prev_hash, None)


def _check_link(row: dict[str, Any], prev_id: int, prev_hash: str,
                find_hash: Callable[[str], int | None]) -> Break | None:
    """Return the break if row does not follow the row before it, else None."""
    rid = row["id"]
    if rid != prev_id + 1:
        return Break(rid, "deleted", f"{_span(prev_id + 1, rid - 1)} deleted before row {rid}")
    if row["prev_hash"] == prev_hash:
        return None
    linked_to = find_hash(row["prev_hash"]) if row["prev_hash"] != GENESIS else None
    if linked_to is not None and linked_to != prev_id:
        return Break(rid, "reordered", f"row {rid} was written after row {linked_to}, not after row {prev_id}")
    if prev_id == 0:
        return Break(rid, "edited", f"row {rid} is the first event but does not start the chain")
    return Break(rid, "edited", f"row {rid} does not follow row {prev_id}: row {prev_id}'s hash was rewritten")


def _check_row(row: dict[str, Any]) -> Break | None:
    """Return the break if the row's contents no longer match its hash, else None."""
    if event_hash(row) != row["hash"]:
        return Break(row["id"], "edited", f"row {row['id']} was edited: its contents do not match its hash")
    return None


def _span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}-{last}"
