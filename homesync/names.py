"""Rules for the names people and machines give things: machine display names, user
names, machine ids and archive names. Pure functions; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone

from homesync.errors import InvalidNameError

MAX_MACHINE_NAME = 100
MAX_USER_NAME = 256
MAX_HOSTNAME = 255
_MACHINE_ID = re.compile(r"[0-9a-f]{16}")
_ARCHIVE_NAME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_LOCAL_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
# Bidirectional overrides and isolates let a name display as something it is not.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def machine_name(raw: str) -> str:
    """Given a display name as typed, return it normalised (NFC, outer spaces removed).
    Raise InvalidNameError if it is empty, too long, or holds control characters."""
    if not isinstance(raw, str):
        raise InvalidNameError("machine name must be text")
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise InvalidNameError("machine name is empty", "give the computer a name such as \"Joe's Thinkpad\"")
    if len(name) > MAX_MACHINE_NAME:
        raise InvalidNameError(
            f"machine name is {len(name)} characters long", f"use at most {MAX_MACHINE_NAME}")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            raise InvalidNameError(
                f"machine name contains the control character U+{ord(ch):04X}",
                "use printable characters only")
    return name


def hostname(raw: str) -> str:
    """Given the host name a client reports, return it (outer spaces removed); raise
    InvalidNameError if it is longer than a host name can be or holds control, format
    (bidi, zero-width) or line-separating characters."""
    name = raw.strip() if isinstance(raw, str) else ""
    if len(name) > MAX_HOSTNAME:
        raise InvalidNameError(f"host name is {len(name)} characters long", f"use at most {MAX_HOSTNAME}")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise InvalidNameError(f"host name contains the control character U+{ord(ch):04X}",
                                   "use printable characters only")
    return name


def machine_name_key(name: str) -> str:
    """Given a valid display name, return the key that makes names unique per user
    ("Joe's Thinkpad" and "joe's thinkpad" are the same computer)."""
    return unicodedata.normalize("NFC", name.casefold())


def user_name(raw: str) -> str:
    """Given a user name from a client, return it; raise InvalidNameError if it cannot
    be a user name at all (empty, too long, control characters). Directory backends
    escape it again before use."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_USER_NAME:
        raise InvalidNameError("invalid user name")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in raw):
        raise InvalidNameError("invalid user name")
    return raw


def local_user_name(raw: str) -> str:
    """Given a name for the local identity backend, return it; raise InvalidNameError
    unless it is a POSIX-style login name (lower case, digits, _ . -; 32 at most)."""
    if not isinstance(raw, str) or not _LOCAL_USER.fullmatch(raw):
        raise InvalidNameError(
            f"invalid user name {raw!r}", "use lower-case letters, digits, '_', '.', '-' (32 at most)")
    return raw


def is_machine_id(value: object) -> bool:
    """Return whether value is a server-generated machine id (16 lower-case hex digits)."""
    return isinstance(value, str) and _MACHINE_ID.fullmatch(value) is not None


def is_archive_name(value: object) -> bool:
    """Return whether value is an archive name homesync generates."""
    return isinstance(value, str) and _ARCHIVE_NAME.fullmatch(value) is not None


def archive_name(when: datetime) -> str:
    """Given a moment, return the archive name for a backup started then (UTC, ms)."""
    utc = when.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def suggest_machine_name(full_name: str, user: str, chassis: str, taken: list[str]) -> str:
    """Given the directory's full name, the user name, the chassis in words ("laptop")
    and the user's computers' names, return a free name such as "Joe's laptop" (then
    "Joe's laptop 2", …)."""
    words = (full_name or "").split() or (user or "").split() or ["My"]
    first = words[0]
    first = first[:1].upper() + first[1:]
    owner = "My" if first == "My" else f"{first}'s"
    base = f"{owner} {chassis or 'computer'}"
    base = "".join(ch for ch in unicodedata.normalize("NFC", base)
                   if unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") and ch not in _BIDI_CONTROLS)
    base = base[:MAX_MACHINE_NAME - 4].strip() or "My computer"
    used = {machine_name_key(t) for t in taken}
    name, number = base, 1
    while machine_name_key(name) in used:
        number += 1
        name = f"{base} {number}"
    return name
