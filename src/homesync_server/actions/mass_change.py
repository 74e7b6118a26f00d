"""The mass-change (ransomware) flag of a machine: raised when its newest archive wrote
an unusually large share of its data anew (homesync_server/ransomware.py decides),
freezing its pruning until an admin releases it. The flag is kept in the index and in
the repository's metadata file, so a reindex brings it back.
"""

from __future__ import annotations

import time
from typing import Any

from homesync.errors import NotFoundError
from homesync_server import ransomware
from homesync_server.actions.setup import admin_actor
from homesync_server.config import Layout
from homesync_server.index import event
from homesync_server.services import Services


def assess(services: Services, machine: dict[str, Any], actor: str) -> dict[str, Any] | None:
    """Return the machine's active (freezing) flag, first raising one if its newest
    archive changed unusually much and no flag for that archive exists yet."""
    settings = services.config.retention
    signal = ransomware.assess(services.index.archives(machine["id"]), settings.mass_change_share,
                               settings.mass_change_factor)
    known = services.index.mass_change_flags(machine["id"], include_released=True)
    if signal and not (known and known[0]["archive"] == signal.archive):
        flag = {"machine_id": machine["id"], "archive": signal.archive, "share": signal.share,
                "baseline": signal.baseline, "flagged_at": time.time()}
        services.index.flag_mass_change(flag, event("mass_change", actor, machine["id"], archive=signal.archive,
                                                    share=round(signal.share, 4),
                                                    baseline=round(signal.baseline, 4)))
        services.repos.update_metadata(machine["id"], mass_change=dict(flag, released_at=None, released_by=""))
        return dict(flag, frozen=True, released_at=None, released_by="")
    return known[0] if known and known[0]["frozen"] else None


def assess_all(layout: Layout) -> list[dict[str, Any]]:
    """Assess every machine now; return the active flags (for a report that wants them fresh)."""
    services = Services.open(layout)
    try:
        actor = admin_actor()
        for machine in services.index.machines():
            assess(services, machine, actor)
        return services.index.mass_change_flags()
    finally:
        services.close()


def release(layout: Layout, machine_id: str) -> dict[str, Any]:
    """Lift a machine's freezes (a mass change's, a history rollback's), so the next prune
    applies its policy again; raise NotFoundError if it has none."""
    services = Services.open(layout)
    try:
        if services.index.machine(machine_id) is None:
            raise NotFoundError(f"no machine {machine_id}", "see `homesync-server machines`")
        actor = admin_actor()
        history = services.index.release_history(machine_id, actor, event("history_release", actor, machine_id))
        if not services.index.release_mass_change(machine_id, actor, event("mass_change_release", actor, machine_id)):
            if history:
                return {"machine_id": machine_id, "released": ["history rollback"]}
            raise NotFoundError(f"the pruning of {machine_id} is not frozen")
        flag = services.index.mass_change_flags(machine_id, include_released=True)[0]
        services.repos.update_metadata(machine_id, mass_change={k: v for k, v in flag.items() if k != "frozen"})
        return dict(flag, released=["mass change"] + (["history rollback"] if history else []))
    finally:
        services.close()
