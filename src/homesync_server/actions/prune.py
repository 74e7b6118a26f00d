"""`homesync-server prune`: apply the retention policy on the server, with the escrowed
passphrase and never through an agent's session (agents may only append). Python
decides (homesync_server/retention.py), so held archives are never touched; borg
deletes and compacts; the index forgets the deleted archives. A machine whose pruning
the mass-change signal froze is skipped until an admin releases it.
"""

from __future__ import annotations

import logging
from typing import Any

from homesync import borg
from homesync.errors import HomesyncError, NotFoundError
from homesync_server import retention
from homesync_server.actions import escrowed, mass_change
from homesync_server.actions.setup import admin_actor
from homesync_server.config import Layout
from homesync_server.index import event
from homesync_server.services import Services

logger = logging.getLogger(__name__)
BATCH = 100  # archives per `borg delete`


def prune(layout: Layout, machine_id: str | None = None, dry_run: bool = False,
          lock_wait: int = borg.LOCK_WAIT) -> list[dict[str, Any]]:
    """Prune one machine or all; return one result each ('pruned', 'nothing to prune',
    'dry run', 'frozen', 'held' or 'failed' with the error). Raise NotFoundError for
    an unknown machine."""
    services = Services.open(layout)
    try:
        if machine_id and services.index.machine(machine_id) is None:
            raise NotFoundError(f"no machine {machine_id}", "see `homesync-server machines`")
        machines = [services.index.machine(machine_id)] if machine_id else services.index.machines()
        actor = admin_actor()
        return [prune_machine(services, m, dry_run, lock_wait, actor) for m in machines]
    finally:
        services.close()


def prune_machine(services: Services, machine: dict[str, Any], dry_run: bool, lock_wait: int,
                  actor: str) -> dict[str, Any]:
    """Prune one machine; return what was (or, dry, would be) kept and deleted. A borg
    failure is returned as result 'failed', so the other machines are still pruned."""
    result = {"machine_id": machine["id"], "name": machine["name"], "owner": machine["owner"],
              "result": "", "reason": "", "kept": {}, "deleted": []}
    try:
        _prune(services, machine, dry_run, lock_wait, actor, result)
    except (HomesyncError, OSError) as e:
        reason = e.line() if isinstance(e, HomesyncError) else f"{e.filename}: {e.strerror}"
        result.update(result="failed", reason=reason)
        logger.error("prune of %s failed: %s", machine["id"], reason)
    return result


def _prune(services: Services, machine: dict[str, Any], dry_run: bool, lock_wait: int, actor: str,
           result: dict[str, Any]) -> None:
    flag = mass_change.assess(services, machine, actor)
    if flag:
        result.update(result="frozen", reason=(
            f"archive {flag['archive']} wrote {flag['share']:.0%} of its data anew (usually "
            f"{flag['baseline']:.0%}); release with `homesync-server machine release --machine {machine['id']}`"))
        return
    held = {h["archive"] for h in services.index.holds(machine["id"])}
    if retention.HOLD_ALL in held:
        result.update(result="held", reason="all its archives are on legal hold")
        return
    repo = escrowed.open_repository(services, machine["id"], "prune", actor, lock_wait)
    plan = retention.plan(repo.archives(), services.config.retention.policy_for(machine["owner"]), held)
    if held & set(plan.delete):  # retention.plan guarantees this; a hold is too important to trust one place
        raise HomesyncError(f"refusing to prune {machine['id']}: the plan would delete a held archive")
    result.update(kept=dict(plan.keep), deleted=list(plan.delete))
    if dry_run or not plan.delete:
        result["result"] = "dry run" if dry_run else "nothing to prune"
        return
    _delete(repo, list(plan.delete))
    services.index.remove_archives(machine["id"], list(plan.delete), event(
        "prune", actor, machine["id"], deleted=list(plan.delete), kept=len(plan.keep)))
    repo.run(borg.make_compact_command(repo.location, repo.lock_wait), secret=False)
    result["result"] = "pruned"


def _delete(repo: escrowed.Repository, names: list[str]) -> None:
    """Delete archives with borg, a batch per call."""
    for start in range(0, len(names), BATCH):
        repo.run(borg.make_delete_command(repo.location, names[start:start + BATCH], repo.lock_wait))
