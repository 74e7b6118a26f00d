"""The fleet policy as a session sees it: the effective values for one machine, user or
group (fleet_policy merges the layers the index keeps), and a user's groups from the
directory (remembered for when it is down) and the local ones. Used by the agents'
`policy.get` and by the admin's `policy show`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from homesync import fleet_policy, names
from homesync.errors import IdentityUnavailableError, NotFoundError
from homesync_server.services import Services

log = logging.getLogger(__name__)


def effective_for(services: Services, machine: str | None = None, user: str | None = None,
                  group: str | None = None) -> dict[str, Any]:
    """Return {version, for, values, sources, groups} for whoever is named."""
    current = services.index.policy_version()
    layers = fleet_policy.Layers.from_json(current["layers"]) if current else fleet_policy.Layers()
    groups: list[str] = [group] if group else []
    if machine is not None:
        row = machine_row(services, machine)
        user = row["owner"]
    if user is not None:
        groups = groups_of(services, user)
    values, sources = fleet_policy.effective(layers, groups, user, machine)
    who = {"machine": machine, "user": user, "group": group}
    return {"version": current["version"] if current else 0, "for": {k: v for k, v in who.items() if v},
            "groups": groups, "values": values, "sources": sources}


def groups_of(services: Services, user: str) -> list[str]:
    """Return the user's groups: the directory's (remembered for when it is down) and the local ones."""
    local = [r["group_name"] for r in services.index.group_members(user)]
    try:
        directory = services.identity.groups(user)
        if directory != services.index.remembered_groups(user):
            services.index.remember_groups(user, directory, time.time())
    except IdentityUnavailableError as e:
        directory = services.index.remembered_groups(user) or []
        log.warning("directory unavailable for %s's groups; using the last known (%s): %s", user,
                    ", ".join(directory) or "none", e.message)
    return sorted(set(directory) | set(local))


def machine_row(services: Services, machine_id: str) -> dict[str, Any]:
    """Return the machine with this id; raise NotFoundError if there is none."""
    row = services.index.machine(machine_id) if names.is_machine_id(machine_id) else None
    if row is None:
        raise NotFoundError(f"no machine with id {machine_id!r}", "see `homesync-server machines`")
    return row
