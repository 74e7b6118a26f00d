"""The file catalog of one computer: every version of every path in its archives, as
ranges of archives, kept in the user's own cache so that `find` and `versions` read one
small file instead of listing every archive again (docs/architecture.md, "Getting one
file back"). Pure but for load and save; borg's listings come in from the caller.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import marshal
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import msgpack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from homesync.files import write_private

FORMAT = 1
LIST_FORMAT = "{size}{mtime}{ctime}"  # borg list --json-lines keys the catalog needs beyond path and type
_GLOB = re.compile(r"[*?\[]")

# A version: (path, type, size, mtime, ctime, first, last); first and last index the
# catalog's archives (in the order they were added, oldest first): the version is in
# every one of them. A name that is not UTF-8 is kept as borg lists it ("?").
PATH, TYPE, SIZE, MTIME, CTIME, FIRST, LAST = range(7)


@dataclass
class Catalog:
    """Archives as (id, name, start), oldest first, and versions as ranges of them."""

    archives: list[tuple[str, str, str]] = field(default_factory=list)
    versions: list[list] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # names the index lists that the repository did not hold

    @classmethod
    def load(cls, file: Path) -> "Catalog":
        """Return the catalog kept in file; an empty one if it is missing, damaged or
        of another format (it is only a cache: the archives are the truth)."""
        try:
            form, archives, versions, absent = marshal.loads(file.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return cls()
        if form != FORMAT:
            return cls()
        return cls([tuple(a) for a in archives], [list(v) for v in versions], list(absent))

    def save(self, file: Path) -> None:
        """Write the catalog to file, readable by its owner only (it names their files)."""
        write_private(file, marshal.dumps((FORMAT, self.archives, self.versions, self.absent)))

    def to_add(self, live: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], bool]:
        """Given the repository's archives (id, name, start; oldest first), return those
        the catalog lacks, and whether it must be rebuilt first (one is older than the
        newest it holds: ranges can only grow at the new end)."""
        known = {a[0] for a in self.archives}
        new = [a for a in live if a[0] not in known]
        newest = self.archives[-1][2] if self.archives else ""
        rebuild = any(a[2] < newest for a in new)
        return (list(live) if rebuild else new), rebuild

    def add(self, archive: tuple[str, str, str], items: Iterable[dict]) -> None:
        """Add one archive's listing (borg list --json-lines with LIST_FORMAT): a version
        also in the archive added before it grows its range, any other is new."""
        index = len(self.archives)
        previous = {_key(v): v for v in self.versions if v[LAST] == index - 1} if index else {}
        for item in items:
            if item["path"] == ".":
                continue
            key = (item["path"], item["type"], item.get("size", 0), item["mtime"], item.get("ctime", ""))
            version = previous.get(key)
            if version is not None:
                version[LAST] = index
            else:
                self.versions.append([*key, index, index])
        self.archives.append(tuple(archive))

    def lacks(self, names: Iterable[str]) -> bool:
        """Return whether any of these archive names is new to the catalog."""
        known = {a[1] for a in self.archives} | set(self.absent)
        return any(name not in known for name in names)

    def held(self, version: list, live: set[str], since: str = "") -> list[tuple[str, str, str]]:
        """Return the archives still there (names in live) that hold version, oldest
        first, only those started at or after since (ISO text, UTC)."""
        return [a for a in self.archives[version[FIRST]:version[LAST] + 1] if a[1] in live and a[2] >= since]

    def matching(self, accept: Callable[[str], bool]) -> Iterator[list]:
        """Yield the versions whose path accept says yes to."""
        return (v for v in self.versions if accept(v[PATH]))


SEALED = b"homesync-catalog-1\n"  # the format of a sealed catalog (what the server keeps)


def seal(cat: Catalog, passphrase: bytes, machine_id: str) -> bytes:
    """Return the catalog compressed and sealed (AES-256-GCM) with a key only the
    repository's passphrase gives, bound to its machine: what the server keeps, so
    that the user's other computers need not list every archive again. msgpack, not
    marshal: the other computer is given it by the server."""
    body = zlib.compress(msgpack.packb([FORMAT, cat.archives, cat.versions, cat.absent], use_bin_type=True,
                                       unicode_errors="surrogateescape"), 6)
    salt, nonce = os.urandom(16), os.urandom(12)
    return SEALED + salt + nonce + AESGCM(_sealing_key(passphrase, salt)).encrypt(
        nonce, body, SEALED + machine_id.encode())


def unseal(blob: bytes, passphrase: bytes, machine_id: str) -> Catalog | None:
    """Return the catalog sealed in blob, or None if it is not one sealed for this
    machine with this passphrase (damaged, another format, or forged)."""
    if not blob.startswith(SEALED):
        return None
    salt, nonce, sealed = blob[len(SEALED):][:16], blob[len(SEALED) + 16:][:12], blob[len(SEALED) + 28:]
    try:
        body = AESGCM(_sealing_key(passphrase, salt)).decrypt(nonce, sealed, SEALED + machine_id.encode())
        form, archives, versions, absent = msgpack.unpackb(zlib.decompress(body), raw=False, use_list=True,
                                                            unicode_errors="surrogateescape")
        if form != FORMAT:
            return None
        cat = Catalog([tuple(a) for a in archives], versions, list(absent))
        if not all(len(a) == 3 for a in cat.archives) or not all(
                len(v) == 7 and 0 <= v[FIRST] <= v[LAST] < len(cat.archives) for v in versions):
            return None
        return cat
    except Exception:  # noqa: BLE001 - whatever is wrong with it, it is not a catalog to use
        return None


def _sealing_key(passphrase: bytes, salt: bytes) -> bytes:
    # the passphrase is 48 random bytes (enroll), so one HMAC is a sound key derivation
    return hmac.new(passphrase, b"homesync file catalog\0" + salt, hashlib.sha256).digest()


def _key(version: list) -> tuple:
    return tuple(version[PATH:CTIME + 1])


def matcher(pattern: str, case_sensitive: bool = False) -> Callable[[str], bool]:
    """Given what the user typed, return a test of archive paths: a substring of the
    path, or a glob (`*.odt`, `report-202?`) matching the file's name, or the whole
    path when the pattern has a "/". Either may match, so a name with glob characters
    in it is found by typing it. Case is ignored unless asked."""
    flags = 0 if case_sensitive else re.IGNORECASE
    literal = pattern if case_sensitive else pattern.casefold()
    glob = re.compile(fnmatch.translate(pattern), flags) if _GLOB.search(pattern) else None
    whole = "/" in pattern

    def accept(path: str) -> bool:
        if literal in (path if case_sensitive else path.casefold()):
            return True
        if glob is None:
            return False
        return bool(glob.match(path if whole else path.rsplit("/", 1)[-1]))
    return accept
