"""Per-machine repositories at <data>/repos/<machine-id>: created with borg, each
carrying its own metadata file and sealed passphrase, so the index can be rebuilt
from the repositories alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from homesync import borg
from homesync.files import write_private as write_atomic
from homesync.names import is_machine_id
from homesync_server.config import Layout
from homesync_server.escrow import EscrowKey

METADATA = "homesync-machine.json"
SEALED_PASSPHRASE = "homesync-passphrase.sealed"


class RepositoryStore:
    """Creates repositories and reads their metadata and escrowed passphrases."""

    def __init__(self, layout: Layout, escrow: EscrowKey) -> None:
        self.layout = layout
        self.escrow = escrow

    def environment(self) -> borg.BorgEnvironment:
        """Return the environment for the server's own borg calls."""
        return borg.BorgEnvironment(base_dir=self.layout.borg_home)

    def create(self, metadata: dict[str, Any], passphrase: bytes) -> Path:
        """Initialise the machine's repository with its passphrase, then write its
        metadata and sealed passphrase. On any failure nothing is left behind."""
        path = self.layout.repo(metadata["id"])
        try:
            borg.run_borg(borg.make_init_command(str(path)), self.environment(), passphrase, timeout=120)
            write_atomic(path / SEALED_PASSPHRASE, self.escrow.seal(passphrase, metadata["id"]))
            self.write_metadata(metadata)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return path

    def discard(self, machine_id: str) -> None:
        """Remove a repository that was created but never indexed (enrollment failed)."""
        shutil.rmtree(self.layout.repo(machine_id), ignore_errors=True)

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Write (or replace) a repository's metadata file."""
        data = json.dumps(metadata, indent=1, sort_keys=True, ensure_ascii=False).encode()
        write_atomic(self.layout.repo(metadata["id"]) / METADATA, data)

    def metadata(self, machine_id: str) -> dict[str, Any]:
        return json.loads((self.layout.repo(machine_id) / METADATA).read_text())

    def update_metadata(self, machine_id: str, **changes: Any) -> dict[str, Any]:
        """Change keys of a repository's metadata file (a value of None removes the key);
        return the new metadata."""
        metadata = self.metadata(machine_id)
        metadata.update(changes)
        metadata = {k: v for k, v in metadata.items() if v is not None}
        self.write_metadata(metadata)
        return metadata

    def machine_ids(self) -> list[str]:
        """Return the ids of every repository that carries homesync's metadata file."""
        if not self.layout.repos.is_dir():
            return []
        return sorted(entry.name for entry in self.layout.repos.iterdir()
                      if is_machine_id(entry.name) and (entry / METADATA).is_file())

    def passphrase(self, machine_id: str) -> bytes:
        """Return a machine's escrowed passphrase, unsealed. Callers audit the release."""
        blob = (self.layout.repo(machine_id) / SEALED_PASSPHRASE).read_bytes()
        return self.escrow.unseal(blob, machine_id)
