"""Key escrow: borg passphrases sealed with the server's escrow key (AES-256-GCM),
bound to the machine id so a sealed blob cannot be swapped between repositories.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from homesync.errors import ConfigError, HomesyncError

_MAGIC = b"HSE1"


class EscrowKey:
    """The server's secret for sealing passphrases."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def create(cls, path: Path) -> "EscrowKey":
        """Generate a new key and write it to path (0600); refuse to overwrite one."""
        key = AESGCM.generate_key(bit_length=256)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> "EscrowKey":
        """Read the key from path; raise ConfigError if it is missing or malformed."""
        try:
            key = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the escrow key {path}: {e.strerror}") from None
        if len(key) != 32:
            raise ConfigError(f"the escrow key {path} is damaged")
        return cls(key)

    def seal(self, secret: bytes, machine_id: str) -> bytes:
        """Return secret encrypted and authenticated for machine_id."""
        nonce = secrets.token_bytes(12)
        return _MAGIC + nonce + self._aead.encrypt(nonce, secret, machine_id.encode())

    def unseal(self, blob: bytes, machine_id: str) -> bytes:
        """Return the secret sealed for machine_id; raise HomesyncError if the blob was
        altered, sealed by another key, or belongs to another machine."""
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 12 + 16:
            raise HomesyncError(f"the escrowed passphrase of machine {machine_id} is damaged")
        nonce, sealed = blob[4:16], blob[16:]
        try:
            return self._aead.decrypt(nonce, sealed, machine_id.encode())
        except InvalidTag:
            raise HomesyncError(f"the escrowed passphrase of machine {machine_id} does not verify") from None
