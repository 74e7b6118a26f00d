"""Template homes ("standard laptop"): repositories an admin publishes under
<data>/templates/<id>, apart from the machines' repositories, each carrying its metadata
file (kind "template", its name, the archives published) and its sealed passphrase.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import shutil
import time
from contextlib import contextmanager
from typing import Any, Iterator

from homesync import borg, names
from homesync.errors import HomesyncError
from homesync.files import write_private
from homesync_server.config import Layout
from homesync_server.escrow import EscrowKey
from homesync_server.repos import SEALED_PASSPHRASE

METADATA = "homesync-template.json"
KIND = "template"


class TemplateStore:
    """Creates template repositories and reads their metadata and passphrases."""

    def __init__(self, layout: Layout, escrow: EscrowKey) -> None:
        self.layout = layout
        self.escrow = escrow

    def environment(self) -> borg.BorgEnvironment:
        return borg.BorgEnvironment(base_dir=self.layout.borg_home)

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Hold the templates' lock, so two admins cannot create the same name twice."""
        self.layout.templates.mkdir(mode=0o700, exist_ok=True)
        with open(self.layout.templates / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def all(self) -> list[dict[str, Any]]:
        """Return the metadata of every template, by name."""
        if not self.layout.templates.is_dir():
            return []
        found = []
        for entry in self.layout.templates.iterdir():
            if names.is_machine_id(entry.name) and (entry / METADATA).is_file():
                found.append(self.metadata(entry.name))
        return sorted(found, key=lambda t: names.machine_name_key(t["name"]))

    def find(self, name: str) -> dict[str, Any] | None:
        """Return the template called name (case-insensitively), or None."""
        key = names.machine_name_key(name)
        return next((t for t in self.all() if names.machine_name_key(t["name"]) == key), None)

    def get(self, template_id: str) -> dict[str, Any] | None:
        """Return the template with this id, or None."""
        if not names.is_machine_id(template_id) or not (self.layout.template(template_id) / METADATA).is_file():
            return None
        return self.metadata(template_id)

    def metadata(self, template_id: str) -> dict[str, Any]:
        return json.loads((self.layout.template(template_id) / METADATA).read_text())

    def create(self, name: str, passphrase: bytes, actor: str) -> dict[str, Any]:
        """Initialise a new template's repository, then write its sealed passphrase and
        metadata; return the metadata. On any failure nothing is left behind."""
        metadata = {"id": secrets.token_hex(8), "kind": KIND, "name": name, "created": time.time(),
                    "created_by": actor, "archives": []}
        path = self.layout.template(metadata["id"])
        try:
            borg.run_borg(borg.make_init_command(str(path)), self.environment(), passphrase, timeout=120)
            write_private(path / SEALED_PASSPHRASE, self.escrow.seal(passphrase, _sealed_for(metadata["id"])))
            self._write(metadata)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return metadata

    def discard(self, template_id: str) -> None:
        """Remove a template whose first publication failed."""
        shutil.rmtree(self.layout.template(template_id), ignore_errors=True)

    def add_archive(self, template_id: str, archive: dict[str, Any]) -> dict[str, Any]:
        """Record a newly published archive; return the new metadata."""
        metadata = self.metadata(template_id)
        metadata["archives"] = metadata.get("archives", []) + [archive]
        self._write(metadata)
        return metadata

    def passphrase(self, template_id: str) -> bytes:
        """Return a template's passphrase, unsealed. Callers audit the release."""
        try:
            blob = (self.layout.template(template_id) / SEALED_PASSPHRASE).read_bytes()
        except OSError as e:
            raise HomesyncError(f"cannot read the passphrase of template {template_id}: {e.strerror}") from None
        return self.escrow.unseal(blob, _sealed_for(template_id))

    def _write(self, metadata: dict[str, Any]) -> None:
        data = json.dumps(metadata, indent=1, sort_keys=True, ensure_ascii=False).encode()
        write_private(self.layout.template(metadata["id"]) / METADATA, data)


def _sealed_for(template_id: str) -> str:
    # Distinct associated data: a machine's sealed passphrase never opens as a template's.
    return f"template:{template_id}"
