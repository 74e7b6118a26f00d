"""The local identity backend for small sites and the demo: a user list in
<data>/users.json with scrypt password hashes, written atomically, mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from pathlib import Path

from homesync.errors import AuthenticationError, ConflictError, NotFoundError
from homesync.files import write_private
from homesync.names import local_user_name
from homesync_server.identity import Person

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_LOGIN_FAILED = "login failed: wrong user name or password"


def hash_password(password: str) -> str:
    """Given a password, return its salted scrypt hash as one printable string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str) -> bool:
    """Return whether password matches a hash made by hash_password, in constant time."""
    try:
        _, salt_b64, digest_b64 = stored.split("$")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    candidate = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return hmac.compare_digest(candidate, digest)


# A hash to compare against for unknown users, so that they cost as much time as known
# ones. Its digest matches no password (the user is unknown anyway), so it needs no
# scrypt at import time, which every command would pay.
_DUMMY_HASH = ("scrypt$" + base64.b64encode(secrets.token_bytes(16)).decode() + "$"
               + base64.b64encode(bytes(32)).decode())


class LocalIdentity:
    """Users kept in a JSON file next to the index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, users: dict[str, dict]) -> None:
        write_private(self.path, json.dumps(users, indent=1, sort_keys=True).encode())

    def add(self, name: str, password: str, admin: bool = False, display_name: str = "") -> Person:
        """Add a user; raise ConflictError if the name is taken."""
        name = local_user_name(name)
        if not password:
            raise AuthenticationError("refusing an empty password")
        with self._lock:
            users = self._load()
            if name in users:
                raise ConflictError(f"user {name!r} already exists")
            users[name] = {"hash": hash_password(password), "admin": admin, "display_name": display_name}
            self._save(users)
        return Person(name, admin, display_name)

    def set_password(self, name: str, password: str) -> None:
        """Replace a user's password; raise NotFoundError for an unknown user."""
        if not password:
            raise AuthenticationError("refusing an empty password")
        with self._lock:
            users = self._load()
            if name not in users:
                raise NotFoundError(f"no user {name!r}")
            users[name]["hash"] = hash_password(password)
            self._save(users)

    def remove(self, name: str) -> None:
        """Remove a user; raise NotFoundError for an unknown user."""
        with self._lock:
            users = self._load()
            if users.pop(name, None) is None:
                raise NotFoundError(f"no user {name!r}", "see `homesync-server user list`")
            self._save(users)

    def authenticate(self, name: str, password: str) -> Person:
        record = self._load().get(name)
        ok = check_password(password, record["hash"] if record else _DUMMY_HASH)
        if not (record and ok and password):
            raise AuthenticationError(_LOGIN_FAILED)
        return self._person(name, record)

    def canonical_name(self, name: str) -> str:
        """Names are matched exactly (users.json holds lower-case POSIX names only), so a
        name is its own canonical form: "JOE" or " joe" names nobody and never logs in."""
        return name

    def lookup(self, name: str) -> Person | None:
        record = self._load().get(name)
        return self._person(name, record) if record else None

    def groups(self, name: str) -> list[str]:
        """Local users have no directory groups (`homesync-server policy group add` puts them in some)."""
        return []

    def people(self) -> list[Person]:
        return [self._person(n, r) for n, r in sorted(self._load().items())]

    @staticmethod
    def _person(name: str, record: dict) -> Person:
        return Person(name, bool(record.get("admin")), record.get("display_name", ""))
