"""The server's services, opened once from the data directory and shared by every
session: configuration, index, identity backend, repositories, escrow, login limits,
template homes and the one-off keys granted for restores.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from homesync_server import config as server_config
from homesync_server.config import Layout, ServerConfig
from homesync_server.escrow import EscrowKey
from homesync_server.identity import IdentityBackend, open_backend
from homesync_server.index import Index
from homesync_server.logins import LoginLimiter
from homesync_server.repos import RepositoryStore
from homesync_server.templates import TemplateStore

GRANT_SECONDS = 6 * 3600


@dataclass
class Grant:
    repository_id: str  # a machine's id, or a template's (template=True)
    user: str
    expires: float
    template: bool = False


@dataclass
class RestoreGrants:
    """One-off public keys a password-authenticated user registered to reach one of
    their machines' repositories, or a template's, through borg (restore on new hardware)."""

    _grants: dict[str, Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, public_key: str, repository_id: str, user: str, template: bool = False) -> None:
        with self._lock:
            now = time.time()
            self._grants = {k: g for k, g in self._grants.items() if g.expires > now}
            self._grants[public_key] = Grant(repository_id, user, now + GRANT_SECONDS, template)

    def find(self, public_key: str, repository_id: str) -> Grant | None:
        """Return the live grant of public_key for repository_id, if any."""
        with self._lock:
            for key, grant in self._grants.items():
                if (secrets.compare_digest(key, public_key) and grant.repository_id == repository_id
                        and grant.expires > time.time()):
                    return grant
        return None


@dataclass
class Services:
    layout: Layout
    config: ServerConfig
    index: Index
    identity: IdentityBackend
    repos: RepositoryStore
    templates: TemplateStore
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    grants: RestoreGrants = field(default_factory=RestoreGrants)
    # serve's post-session checks: told (machine id, started, ended) when a borg session of a machine ends
    on_session_end: Callable[[str, float, float], None] | None = None

    @classmethod
    def open(cls, layout: Layout) -> "Services":
        """Open everything the data directory holds; raise ConfigError if it is not one."""
        config = server_config.load(layout)
        escrow = EscrowKey.load(layout.escrow_key)
        return cls(layout, config, Index(layout.index), open_backend(config.identity, layout.data),
                   RepositoryStore(layout, escrow), TemplateStore(layout, escrow))

    def close(self) -> None:
        self.index.close()
