"""`homesync-server hold add|remove|list`: legal holds. A held archive is never pruned;
a hold on all of a machine's archives ('*') stops its pruning altogether. Holds are
kept in the index and in the repository's metadata file, so a reindex brings them back.
"""

from __future__ import annotations

from typing import Any

from homesync.errors import NotFoundError
from homesync_server import escrowed
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.retention import HOLD_ALL
from homesync_server.services import Services


def add(layout: Layout, machine_id: str, archive: str | None, reason: str = "") -> dict[str, Any]:
    """Hold one archive of a machine (None: all of them, present and future); return
    the hold. Raise NotFoundError if the machine or the archive does not exist."""
    with Services.open(layout) as services:
        _machine(services, machine_id)
        actor = admin_actor()
        if archive is not None:
            _require_archive(services, machine_id, archive, actor)
        name = archive or HOLD_ALL
        added = services.index.add_hold(machine_id, name, actor, reason,
                                        event("hold_add", actor, machine_id, archive=name, reason=reason))
        _mirror(services, machine_id)
        return {"machine_id": machine_id, "archive": name, "added": added}


def remove(layout: Layout, machine_id: str, archive: str | None) -> dict[str, Any]:
    """Lift one hold (None: every hold of the machine); return how many were lifted.
    Raise NotFoundError if there was none."""
    with Services.open(layout) as services:
        _machine(services, machine_id)
        actor = admin_actor()
        removed = services.index.remove_holds(machine_id, archive, event(
            "hold_remove", actor, machine_id, archive=archive if archive is not None else "(all holds)"))
        if not removed:
            raise NotFoundError(f"no such hold on {machine_id}", "see `homesync-server hold list`")
        _mirror(services, machine_id)
        return {"machine_id": machine_id, "removed": removed}


def listed(layout: Layout, machine_id: str | None) -> list[dict[str, Any]]:
    """Return the holds (of one machine, or all)."""
    with Services.open(layout) as services:
        return services.index.holds(machine_id)


def _machine(services: Services, machine_id: str) -> dict[str, Any]:
    machine = services.index.machine(machine_id)
    if machine is None:
        raise NotFoundError(f"no machine {machine_id}", "see `homesync-server machines`")
    return machine


def _require_archive(services: Services, machine_id: str, archive: str, actor: str) -> None:
    """Raise NotFoundError unless the archive is indexed or in the repository."""
    if any(a["name"] == archive for a in services.index.archives(machine_id)):
        return
    repo = escrowed.open_repository(services, machine_id, "hold", actor)
    if archive not in {a.name for a in repo.archives()}:
        raise NotFoundError(f"{machine_id} has no archive {archive!r}")


def _mirror(services: Services, machine_id: str) -> None:
    """Write the machine's holds into its repository's metadata file."""
    holds = [{k: h[k] for k in ("archive", "added", "added_by", "reason")} for h in services.index.holds(machine_id)]
    services.repos.update_metadata(machine_id, holds=holds or None)
