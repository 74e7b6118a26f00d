"""Who the people are: the identity interface every backend implements (local user
list, LDAP), and the choice of backend from the server configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from homesync.errors import ConfigError


@dataclass(frozen=True)
class Person:
    """A user as the directory knows them."""

    name: str
    admin: bool = False
    display_name: str = ""
    mail: str = ""


class IdentityBackend(Protocol):
    """What the server needs from a directory of people."""

    def authenticate(self, name: str, password: str) -> Person:
        """Given a user name and password, return the person. Raise AuthenticationError
        (one message for unknown user and wrong password alike) or
        IdentityUnavailableError when the directory cannot be reached."""

    def lookup(self, name: str) -> Person | None:
        """Given a user name, return the person, or None if the directory no longer
        has them. Raise IdentityUnavailableError when it cannot be reached."""

    def canonical_name(self, name: str) -> str:
        """Given a user name as typed (checked by names.user_name), return the one form of
        every name the directory takes for the same person (the key of its login limit)."""

    def people(self) -> list[Person]:
        """Return everyone the directory lets use homesync."""

    def groups(self, name: str) -> list[str]:
        """Given a user name, return the names of the directory groups they belong to
        ([] if the backend has none). Raise IdentityUnavailableError when it cannot be reached."""


def open_backend(identity: "IdentityConfig", data_dir: Path) -> IdentityBackend:
    """Given the [identity] configuration, return the backend it names."""
    if identity.backend == "local":
        from homesync_server.identity.local import LocalIdentity

        return LocalIdentity(data_dir / "users.json")
    if identity.backend == "ldap":
        from homesync_server.identity.ldap import LdapIdentity

        return LdapIdentity(identity)
    raise ConfigError(f"unknown identity backend {identity.backend!r}", "use \"local\" or \"ldap\"")


@dataclass(frozen=True)
class IdentityConfig:
    """The [identity] section of server.toml (contract: see docs/admin-guide.md)."""

    backend: str = "local"
    urls: tuple[str, ...] = ("ldap://127.0.0.1:389",)
    starttls: bool = False
    ca_file: str = ""
    bind_dn: str = ""
    bind_password_file: str = ""
    user_base: str = ""
    user_filter: str = "(uid={username})"
    admin_group: str = ""
    group_base: str = ""  # where the groups a fleet policy names live (their cn is the group's name)
    # ANDed into the user search, so that locked accounts are not found, e.g.
    # "(!(pwdAccountLockedTime=*))".
    account_filter: str = ""
    name_attribute: str = "uid"
    display_name_attribute: str = "cn"
    mail_attribute: str = "mail"
    timeout: float = 5.0
