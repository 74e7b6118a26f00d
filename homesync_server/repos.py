"""The repositories the server keeps, each with its metadata file and sealed passphrase
so that the index can be rebuilt from them alone: the machines' under <data>/repos/<id>
(RepositoryStore) and the admin's template homes under <data>/templates/<id>
(TemplateStore, templates.py). What both do is here, once.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from homesync import borg
from homesync.errors import DiskFullError, NotFoundError, UsageError
from homesync.files import write_private
from homesync.names import is_machine_id
from homesync_server.config import Layout
from homesync_server.escrow import EscrowKey

METADATA = "homesync-machine.json"
SEALED_PASSPHRASE = "homesync-passphrase.sealed"
CATALOG = "homesync-files.catalog"  # the machine's file catalog, sealed by the client (catalog.put)
MAX_CATALOG = 64 << 20  # bytes; a 100,000-file home with 30 archives seals to about 1.5 MB
CATALOG_PART = 512 << 10  # bytes a catalog.get answers at most (RPC frames are at most 1 MiB)


class SealedRepositories:
    """Repositories in one directory, each holding its metadata file and its passphrase
    sealed with the escrow key. Subclasses name the directory, the metadata file, and
    what a passphrase is sealed for (so one kind's never opens as the other's)."""

    metadata_name = METADATA

    def __init__(self, layout: Layout, escrow: EscrowKey, node_id: str = "") -> None:
        self.layout = layout
        self.escrow = escrow
        self.node_id = node_id  # BORG_HOST_ID of every borg the server runs (issue 14)

    def root(self) -> Path:
        raise NotImplementedError

    def path(self, repository_id: str) -> Path:
        return self.root() / repository_id

    def sealed_for(self, repository_id: str) -> str:
        return repository_id

    def environment(self) -> borg.BorgEnvironment:
        """Return the environment of every borg the server runs (borg serve for a session,
        and its own: checks, drills, prune), the one place that builds it: borg's lock
        files name this node (BORG_HOST_ID), so that another node can tell whose they are."""
        return borg.BorgEnvironment(base_dir=self.layout.borg_home,
                                    extra={"BORG_HOST_ID": self.node_id} if self.node_id else {})

    def _create(self, metadata: dict[str, Any], passphrase: bytes) -> Path:
        """Initialise the repository with its passphrase, then write its sealed
        passphrase and metadata. On any failure nothing is left behind."""
        path = self.path(metadata["id"])
        try:
            borg.run_borg(borg.make_init_command(str(path)), self.environment(), passphrase, timeout=120)
            write_private(path / SEALED_PASSPHRASE, self.escrow.seal(passphrase, self.sealed_for(metadata["id"])))
            self.write_metadata(metadata)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return path

    def discard(self, repository_id: str) -> None:
        """Remove a repository that was created but never recorded (its first step failed)."""
        shutil.rmtree(self.path(repository_id), ignore_errors=True)

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Write (or replace) a repository's metadata file."""
        data = json.dumps(metadata, indent=1, sort_keys=True, ensure_ascii=False).encode()
        write_private(self.path(metadata["id"]) / self.metadata_name, data)

    def metadata(self, repository_id: str) -> dict[str, Any]:
        return json.loads((self.path(repository_id) / self.metadata_name).read_text())

    def ids(self) -> list[str]:
        """Return the ids of every repository that carries its metadata file."""
        if not self.root().is_dir():
            return []
        return sorted(entry.name for entry in self.root().iterdir()
                      if is_machine_id(entry.name) and (entry / self.metadata_name).is_file())

    def passphrase(self, repository_id: str) -> bytes:
        """Return a repository's escrowed passphrase, unsealed (OSError if unreadable).
        Callers audit the release."""
        blob = (self.path(repository_id) / SEALED_PASSPHRASE).read_bytes()
        return self.escrow.unseal(blob, self.sealed_for(repository_id))


class RepositoryStore(SealedRepositories):
    """The machines' repositories."""

    def root(self) -> Path:
        return self.layout.repos

    def path(self, repository_id: str) -> Path:
        return self.layout.repo(repository_id)

    def create(self, metadata: dict[str, Any], passphrase: bytes) -> Path:
        """Initialise a machine's repository (metadata["id"]); see _create."""
        return self._create(metadata, passphrase)

    def update_metadata(self, machine_id: str, **changes: Any) -> dict[str, Any]:
        """Change keys of a repository's metadata file (a value of None removes the key);
        return the new metadata."""
        metadata = self.metadata(machine_id)
        metadata.update(changes)
        metadata = {k: v for k, v in metadata.items() if v is not None}
        self.write_metadata(metadata)
        return metadata

    def put_catalog(self, machine_id: str, offset: int, data: bytes, final: bool) -> dict[str, Any]:
        """Append a part of a machine's sealed file catalog at offset (0 starts anew);
        final: it is whole, and replaces the one kept. Parts out of order, or more than
        MAX_CATALOG bytes in all, are refused (UsageError); the kept one stays."""
        part = self.path(machine_id) / (CATALOG + ".part")
        size = part.stat().st_size if offset and part.exists() else 0
        if offset != size:
            raise UsageError(f"catalog part at {offset} out of order (the server holds {size} bytes)")
        if offset + len(data) > MAX_CATALOG:
            part.unlink(missing_ok=True)
            raise UsageError(f"a file catalog may hold at most {MAX_CATALOG} bytes")
        try:
            with open(part, "r+b" if offset else "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
                out.seek(offset)
                out.write(data)
                out.truncate()
        except OSError as e:
            part.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError("the backup server's disk is full: the file list was not kept") from None
            raise
        if final:
            os.replace(part, self.path(machine_id) / CATALOG)
        return {"size": offset + len(data)}

    def get_catalog(self, machine_id: str, offset: int) -> dict[str, Any]:
        """Return up to CATALOG_PART bytes of a machine's sealed file catalog from offset,
        with its size and a stamp that changes when a new one replaces it; NotFoundError
        if there is none."""
        try:
            with open(self.path(machine_id) / CATALOG, "rb") as f:
                stat = os.fstat(f.fileno())
                f.seek(max(offset, 0))
                data = f.read(CATALOG_PART)
        except FileNotFoundError:
            raise NotFoundError("no file catalog is kept for this machine") from None
        return {"size": stat.st_size, "stamp": f"{stat.st_ino}:{stat.st_mtime_ns}", "data": data}

    def machine_ids(self) -> list[str]:
        """Return the ids of every machine repository that carries homesync's metadata file."""
        return self.ids()
