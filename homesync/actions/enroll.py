"""`homesync enroll`: register this computer with the server under a display name,
with a new machine key and a random repository passphrase escrowed to the server."""

from __future__ import annotations

import re
import secrets
import socket

from homesync import config as agent_config
from homesync import link, names, transport
from homesync.config import Paths
from homesync.errors import ConflictError, UsageError

_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def check_fingerprint(text: str) -> str:
    """Return text if it looks like an OpenSSH SHA256 fingerprint; raise UsageError."""
    if not _FINGERPRINT.fullmatch(text or ""):
        raise UsageError(f"{text!r} is not a host key fingerprint",
                         "copy the SHA256:… line that `homesync-server fingerprint` prints")
    return text


def enroll(paths: Paths, server: str, user: str, machine_name: str, fingerprint: str, password: str) -> dict:
    """Enroll this computer; return the server's answer (machine id and name). Nothing
    is written locally unless the server accepted the enrollment."""
    if paths.config_file.exists():
        current = agent_config.load(paths)
        raise ConflictError(f"this computer is already enrolled as {current.machine_name!r}",
                            f"to start over, move {paths.config_dir} and {paths.data_dir} away first")
    name = names.machine_name(machine_name)
    check_fingerprint(fingerprint)
    transport.parse_address(server)
    key = transport.new_key()
    passphrase = secrets.token_urlsafe(48).encode()
    with link.user_session(server, fingerprint, user, password) as session:
        answer = session.rpc().call("machine.enroll", name=name, hostname=socket.gethostname(),
                                    public_key=transport.public_key_line(key.pkey), passphrase=passphrase)
    save_enrollment(paths, server, fingerprint, user, answer, key, passphrase)
    return answer


def save_enrollment(paths: Paths, server: str, fingerprint: str, user: str, machine: dict,
                    key: transport.KeyPair, passphrase: bytes) -> None:
    """Write this computer's identity: key, passphrase, then the configuration (last, so
    that its presence means "enrolled"); all 0600."""
    agent_config.write_private(paths.machine_key, key.pem.encode())
    agent_config.write_private(paths.passphrase_file, passphrase)
    try:
        existing = paths.config_file.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        existing = None
    agent_config.write_private(paths.config_file, agent_config.render_keeping(
        existing, server, fingerprint, user, machine["machine_id"], machine["name"]).encode())
