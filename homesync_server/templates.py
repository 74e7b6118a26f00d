"""Template homes ("standard laptop"): repositories an admin publishes under
<data>/templates/<id>, apart from the machines' repositories, each carrying its metadata
file (kind "template", its name, the archives published) and its sealed passphrase.
"""

from __future__ import annotations

import fcntl
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from homesync import names
from homesync.errors import HomesyncError
from homesync_server.repos import SealedRepositories

METADATA = "homesync-template.json"
KIND = "template"


class TemplateStore(SealedRepositories):
    """Creates template repositories and reads their metadata and passphrases."""

    metadata_name = METADATA

    def root(self) -> Path:
        return self.layout.templates

    def path(self, repository_id: str) -> Path:
        return self.layout.template(repository_id)

    def sealed_for(self, repository_id: str) -> str:
        return _sealed_for(repository_id)

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Hold the templates' lock, so two admins cannot create the same name twice."""
        self.layout.templates.mkdir(mode=0o700, exist_ok=True)
        with open(self.layout.templates / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def all(self) -> list[dict[str, Any]]:
        """Return the metadata of every template, by name."""
        return sorted(map(self.metadata, self.ids()), key=lambda t: names.machine_name_key(t["name"]))

    def find(self, name: str) -> dict[str, Any] | None:
        """Return the template called name (case-insensitively), or None."""
        key = names.machine_name_key(name)
        return next((t for t in self.all() if names.machine_name_key(t["name"]) == key), None)

    def get(self, template_id: str) -> dict[str, Any] | None:
        """Return the template with this id, or None."""
        if not names.is_machine_id(template_id) or not (self.path(template_id) / METADATA).is_file():
            return None
        return self.metadata(template_id)

    def create(self, name: str, passphrase: bytes, actor: str) -> dict[str, Any]:
        """Initialise a new template's repository, then write its sealed passphrase and
        metadata; return the metadata. On any failure nothing is left behind."""
        metadata = {"id": secrets.token_hex(8), "kind": KIND, "name": name, "created": time.time(),
                    "created_by": actor, "archives": []}
        self._create(metadata, passphrase)
        return metadata

    def add_archive(self, template_id: str, archive: dict[str, Any]) -> dict[str, Any]:
        """Record a newly published archive; return the new metadata."""
        metadata = self.metadata(template_id)
        metadata["archives"] = metadata.get("archives", []) + [archive]
        self.write_metadata(metadata)
        return metadata

    def passphrase(self, template_id: str) -> bytes:
        """Return a template's passphrase, unsealed. Callers audit the release."""
        try:
            return super().passphrase(template_id)
        except OSError as e:
            raise HomesyncError(f"cannot read the passphrase of template {template_id}: {e.strerror}") from None


def _sealed_for(template_id: str) -> str:
    # Distinct associated data: a machine's sealed passphrase never opens as a template's.
    return f"template:{template_id}"
