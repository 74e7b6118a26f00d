"""`homesync-server template publish|list`: template homes ("standard laptop") an admin
publishes from a directory, each publication a new archive, which users restore with
`homesync restore --template NAME`.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from homesync import borg, names
from homesync.errors import HomesyncError, UsageError
from homesync_server.escrowed import TIMEOUT
from homesync_server.index import admin_actor
from homesync_server.config import Layout
from homesync_server.services import Services


def publish(layout: Layout, name: str, source: Path) -> dict[str, Any]:
    """Back up source as the newest archive of the template called name, creating the
    template first if there is none; return what was published. Raise UsageError for
    a bad name or an unreadable source, BorgError if borg fails."""
    name = names.machine_name(name)
    source = _readable_directory(source)
    with Services.open(layout) as services:
        actor = admin_actor()
        with services.templates.publishing():
            template = services.templates.find(name)
            created = template is None
            if created:
                passphrase = secrets.token_urlsafe(48).encode()
                template = services.templates.create(name, passphrase, actor)
                services.index.audit("template_create", actor, template=template["id"], name=name)
            else:
                passphrase = services.templates.passphrase(template["id"])
                services.index.audit("passphrase_release", actor, to="publish", template=template["id"], name=name)
            try:
                archive = _create_archive(services, template["id"], passphrase, source, actor)
            except BaseException:
                if created:  # a template without any archive would only confuse users
                    services.templates.discard(template["id"])
                raise
        services.index.audit("template_publish", actor, template=template["id"], name=template["name"],
                             archive=archive["name"], files=archive["files"], bytes=archive["original_size"])
        return {"id": template["id"], "name": template["name"], "created": created, "archive": archive["name"],
                "files": archive["files"], "original_size": archive["original_size"], "warnings": archive["warnings"]}


def _readable_directory(source: Path) -> Path:
    source = source.expanduser().absolute()
    if not source.is_dir():
        raise UsageError(f"{source} is not a directory", "publish a directory holding the template home")
    if not os.access(source, os.R_OK | os.X_OK):
        raise UsageError(f"{source} is not readable by the server's user", "make it readable, then publish again")
    return source


def _create_archive(services: Services, template_id: str, passphrase: bytes, source: Path,
                    actor: str) -> dict[str, Any]:
    """Back up source into the template's repository; record and return the archive."""
    name = names.archive_name(datetime.now(timezone.utc))
    location = str(services.layout.template(template_id))
    argv = borg.make_create_command(location, name, excludes=(), markers=(), progress=False)
    result = borg.run_borg(argv, services.templates.environment(), passphrase, cwd=str(source), timeout=TIMEOUT)
    stats = result.json["archive"]["stats"]
    # The id pins the archive's content (borg's ids chain down to every chunk), so users
    # restore what was published even if the archive's name were pointed elsewhere.
    archive = {"name": name, "id": result.json["archive"]["id"], "published": time.time(), "published_by": actor,
               "files": stats["nfiles"], "original_size": stats["original_size"]}
    services.templates.add_archive(template_id, archive)
    return dict(archive, warnings=list(result.warnings))


def listed(layout: Layout) -> list[dict[str, Any]]:
    """Return every template with its archives count and newest publication."""
    with Services.open(layout) as services:
        try:
            return [_listed(template) for template in services.templates.all()]
        except (OSError, ValueError, KeyError) as e:
            raise HomesyncError(f"cannot read the templates in {layout.templates}: {e}") from None


def _listed(template: dict[str, Any]) -> dict[str, Any]:
    archives = template.get("archives", [])
    newest = archives[-1] if archives else {}
    return {"id": template["id"], "name": template["name"], "created": template["created"],
            "archives": len(archives), "latest": newest.get("name"), "published": newest.get("published"),
            "files": newest.get("files"), "original_size": newest.get("original_size")}


def remove(layout: Layout, name: str) -> dict[str, Any]:
    """Remove the template called name with all its archives, and end the restore grants
    made for it; return what was removed. Raise NotFoundError if there is none."""
    from homesync.errors import NotFoundError

    with Services.open(layout) as services:
        with services.templates.publishing():
            template = services.templates.find(names.machine_name(name))
            if template is None:
                raise NotFoundError(f"no template {name!r}", "see `homesync-server template list`")
            archives = len(template.get("archives", []))
            services.grants.end(template["id"])
            services.templates.discard(template["id"])
        services.index.audit("template_remove", admin_actor(), template=template["id"], name=template["name"],
                             archives=archives)
        return {"id": template["id"], "name": template["name"], "archives": archives}
