"""Server set-up actions: create a data directory, show its fingerprint, add users."""

from __future__ import annotations

import os
import paramiko

from homesync.errors import ConfigError
from homesync.transport import fingerprint, new_key
from homesync_server import config as server_config
from homesync_server.config import Layout
from homesync_server.escrow import EscrowKey
from homesync_server.identity.local import LocalIdentity
from homesync_server.index import admin_actor
from homesync_server.index_store import default_url, open_index, open_url


def init(layout: Layout, listen: str) -> str:
    """Create the data directory (host key, escrow key, index, config); return the host
    key fingerprint. Raise ConfigError if it already holds a server."""
    server_config.parse_listen(listen)
    if layout.config_file.exists() or layout.host_key.exists():
        raise ConfigError(f"{layout.data} already holds a homesync server",
                          "use another directory, or `homesync-server fingerprint` to see its key")
    layout.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(layout.data, 0o700)
    for directory in (layout.repos, layout.borg_home):
        directory.mkdir(mode=0o700, exist_ok=True)
    key = new_key()
    key.save(layout.host_key)
    EscrowKey.create(layout.escrow_key)
    open_url(default_url(layout)).close()
    layout.config_file.write_text(server_config.render_default(listen))
    return fingerprint(key.pkey)


def host_key(layout: Layout) -> paramiko.PKey:
    """Load the server's host key; raise ConfigError if the directory has none."""
    try:
        return paramiko.Ed25519Key.from_private_key_file(str(layout.host_key))
    except (OSError, paramiko.SSHException):
        raise ConfigError(f"no host key in {layout.data}", "run `homesync-server init --data DIR` first") from None


def host_fingerprint(layout: Layout) -> str:
    return fingerprint(host_key(layout))


def add_local_user(layout: Layout, name: str, password: str, admin: bool, full_name: str = "") -> None:
    """Add a user to the local identity backend."""
    server_config.load(layout)  # refuse a directory that is not a server
    LocalIdentity(layout.data / "users.json").add(name, password, admin=admin, display_name=full_name.strip())
    index = open_index(layout)
    try:
        index.record_user(name, full_name.strip())
        index.audit("user_add", admin_actor(), user=name, admin=admin)
    finally:
        index.close()
