"""The admin's side of the mass-change (ransomware) flags: assess every machine now,
and release a machine's freezes (homesync_server/mass_change.py raises the flags).
"""

from __future__ import annotations

from typing import Any

from homesync.errors import NotFoundError
from homesync_server import mass_change
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.nodes import job_lease
from homesync_server.services import Services


def assess_all(layout: Layout) -> list[dict[str, Any]]:
    """Assess every machine now; return the active flags (for a report that wants them fresh)."""
    with Services.open(layout) as services, job_lease(services, "mass-change", "mass-change assessments are"):
        actor = admin_actor()
        for machine in services.index.machines():
            mass_change.assess(services, machine, actor)
        return services.index.mass_change_flags()


def release(layout: Layout, machine_id: str) -> dict[str, Any]:
    """Lift a machine's freezes (a mass change's, a history rollback's), so the next prune
    applies its policy again; raise NotFoundError if it has none."""
    with Services.open(layout) as services:
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
