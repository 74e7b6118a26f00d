"""The server's services, opened once from the data directory and shared by every
session: configuration, index, identity backend, repositories, escrow, password logins,
template homes and the one-off keys granted for restores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from homesync_server import config as server_config
from homesync_server.config import Layout, ServerConfig
from homesync_server.escrow import EscrowKey
from homesync_server.identity import IdentityBackend, open_backend
from homesync_server.index_store import IndexStore, open_index
from homesync_server.password_login import PasswordLogins
from homesync_server.repos import RepositoryStore
from homesync_server.templates import TemplateStore

logger = logging.getLogger(__name__)

GRANT_SECONDS = 24 * 3600  # a grant ends this long after it was given, used or not ...
GRANT_IDLE_SECONDS = 30 * 60  # ... or when no session used it for this long


@dataclass
class Grant:
    repository_id: str  # a machine's id, or a template's (template=True)
    user: str
    template: bool = False


@dataclass
class RestoreGrants:
    """One-off public keys a password-authenticated user registered to reach one of
    their machines' repositories, or a template's, through borg (restore on new hardware).
    Kept in the index, so every process sees them and a restart changes nothing; a
    grant ends with the restore's report, after an idle time, and when its machine is
    adopted, retired or transferred; it is good only while its user owns the machine."""

    index: IndexStore

    def add(self, public_key: str, repository_id: str, user: str, template: bool = False) -> None:
        now = time.time()
        self.index.add_grant({"public_key": public_key, "repository_id": repository_id, "user": user,
                              "template": int(template), "granted": now, "expires": now + GRANT_SECONDS,
                              "idle": GRANT_IDLE_SECONDS})

    def find(self, public_key: str, repository_id: str) -> Grant | None:
        """Return the live grant of public_key for repository_id, if any (marking it used)."""
        now = time.time()
        row = self.index.live_grant(public_key, repository_id, now)
        if row is None or not self._owned(row):
            return None
        self.index.touch_grant(public_key, now)
        return Grant(row["repository_id"], row["user"], bool(row["template"]))

    def still_granted(self, public_key: str, repository_id: str, user: str, touch: bool) -> bool:
        """Return whether a live session's grant still stands (not ended nor revoked;
        its age is no reason to cut a restore short); touch: mark it used."""
        row = self.index.grant(public_key, repository_id)
        if row is None or row["user"] != user or not self._owned(row):
            return False
        if touch:
            self.index.touch_grant(public_key, time.time())
        return True

    def sweep(self) -> None:
        """End the lapsed grants; say in the log which restores ended without a report."""
        for grant in self.index.end_lapsed_grants(time.time()):
            kind = "template" if grant["template"] else "machine"
            logger.warning("the restore of %s %s by %s ended without a report (its grant lapsed, last used %s)",
                           kind, grant["repository_id"], grant["user"],
                           time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(grant["last_used"])))

    def end(self, repository_id: str, user: str | None = None, public_key: str | None = None) -> int:
        """End the grants for a repository (only user's, and only public_key's, if
        given); return how many."""
        return self.index.revoke_grants(repository_id, user, public_key)

    def _owned(self, row: dict) -> bool:
        if row["template"]:
            return True
        machine = self.index.machine(row["repository_id"])
        return machine is not None and machine["owner"] == row["user"]


class SessionWatch(Protocol):
    """What serve's post-session checks are told about sessions that may write a repository."""

    def session_opened(self, machine_id: str, started: float) -> None: ...

    def session_ended(self, machine_id: str, started: float, ended: float) -> None: ...


@dataclass
class Services:
    layout: Layout
    config: ServerConfig
    index: IndexStore
    identity: IdentityBackend
    repos: RepositoryStore
    templates: TemplateStore
    grants: RestoreGrants = field(init=False)
    logins: PasswordLogins = field(init=False)

    def __post_init__(self) -> None:
        self.logins = PasswordLogins(self.index, self.identity)
        self.grants = RestoreGrants(self.index)
    # serve's post-session checks: told when a session that may write a machine's repository opens and ends
    session_checks: SessionWatch | None = None

    @classmethod
    def open(cls, layout: Layout) -> "Services":
        """Open everything the data directory holds; raise ConfigError if it is not one."""
        config = server_config.load(layout)
        node_id = server_config.node_id(config)
        escrow = EscrowKey.load(layout.escrow_key)
        return cls(layout, config, open_index(layout, config=config), open_backend(config.identity, layout.data),
                   RepositoryStore(layout, escrow, node_id), TemplateStore(layout, escrow, node_id))

    @property
    def node_id(self) -> str:
        """This node's id (issue 14): what its borg locks and leases are attributed to."""
        return self.repos.node_id

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
