"""How the agent reaches its server: an SSH session as this machine (its key) or as
the user (their password), and the borg location and environment that make borg go
through homesync's shim to one machine's repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homesync import borg, shim, transport
from homesync.config import AgentConfig, AgentSettings, Paths


def machine_session(config: AgentConfig, paths: Paths) -> transport.Session:
    """Log in to the server as this enrolled machine."""
    key = transport.load_key(paths.machine_key)
    return transport.Session.connect(config.server, config.fingerprint, config.machine_id, key=key)


def user_session(server: str, fingerprint: str, user: str, password: str) -> transport.Session:
    """Log in to the server as a user, with their password."""
    return transport.Session.connect(server, fingerprint, user, password=password)


@dataclass(frozen=True)
class RepositoryAccess:
    """Everything borg needs to reach one machine's repository through the shim."""

    server: str
    fingerprint: str
    machine_id: str
    key_file: Path
    paths: Paths
    server_timeout: float = AgentSettings.server_timeout

    @property
    def location(self) -> str:
        """Return the borg repository URL; the server resolves "/./<id>" to that machine's
        repository and refuses any other."""
        host, port = transport.parse_address(self.server)
        host = f"[{host}]" if ":" in host else host
        return f"ssh://{self.machine_id}@{host}:{port}/./{self.machine_id}"

    def environment(self) -> borg.BorgEnvironment:
        return borg.BorgEnvironment(
            cache_dir=self.paths.borg_cache, config_dir=self.paths.borg_config, rsh=shim.rsh_command(),
            extra={shim.ENV_FINGERPRINT: self.fingerprint, shim.ENV_KEY_FILE: str(self.key_file),
                   shim.ENV_SILENCE: str(self.server_timeout)})


def machine_repository(config: AgentConfig, paths: Paths) -> RepositoryAccess:
    """Return access to this machine's own repository, with its machine key."""
    return RepositoryAccess(config.server, config.fingerprint, config.machine_id, paths.machine_key, paths,
                            config.agent.server_timeout)
