"""`homesync-server prune`: apply the retention policy on the server, with the escrowed
passphrase and never through an agent's session (agents may only append). Python
decides (homesync_server/retention.py), so held archives are never touched; borg
deletes and compacts; the index forgets the deleted archives. Archives are dated by the
time the server observed them; flagged ones are neither counted nor deleted. A machine
that the mass-change signal or a history rollback froze is skipped until released.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from homesync import borg
from homesync.errors import HomesyncError, NotFoundError
from homesync_server import retention
from homesync_server import escrowed, mass_change
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.nodes import Lease, LeaseHeld
from homesync_server.services import Services

logger = logging.getLogger(__name__)
BATCH = 100  # archives per `borg delete`
CHECK_WAIT = 120  # seconds to wait for a pending post-session check


def prune(layout: Layout, machine_id: str | None = None, dry_run: bool = False,
          lock_wait: int = borg.LOCK_WAIT) -> list[dict[str, Any]]:
    """Prune one machine or all; return one result each ('pruned', 'nothing to prune',
    'dry run', 'frozen', 'held', 'skipped' (another node prunes it now) or 'failed'
    with the error). Raise NotFoundError for an unknown machine."""
    with Services.open(layout) as services:
        if machine_id and services.index.machine(machine_id) is None:
            raise NotFoundError(f"no machine {machine_id}", "see `homesync-server machines`")
        machines = [services.index.machine(machine_id)] if machine_id else services.index.machines()
        actor = admin_actor()
        return [prune_machine(services, m, dry_run, lock_wait, actor) for m in machines]


def prune_machine(services: Services, machine: dict[str, Any], dry_run: bool, lock_wait: int,
                  actor: str) -> dict[str, Any]:
    """Prune one machine under its lease in the index; return what was (or, dry, would
    be) kept and deleted, by which node, when. A borg failure is returned as result
    'failed', so the other machines are still pruned; a machine another node is
    pruning now as 'skipped'."""
    result = {"machine_id": machine["id"], "name": machine["name"], "owner": machine["owner"],
              "result": "", "reason": "", "kept": {}, "deleted": [], "flagged": [], "node": services.node_id,
              "started": time.time(), "finished": None}
    try:
        # one prune of a repository at a time, whichever node runs it (issue 14)
        with Lease(services.index, f"prune:{machine['id']}", services.node_id, services.config.node.lease_seconds):
            _prune(services, machine, dry_run, lock_wait, actor, result)
    except LeaseHeld as e:
        result.update(result="skipped", reason=f"node {e.lease['node']} is pruning it")
    except (HomesyncError, OSError) as e:
        reason = e.line() if isinstance(e, HomesyncError) else f"{e.filename}: {e.strerror}"
        result.update(result="failed", reason=reason)
        logger.error("prune of %s failed: %s", machine["id"], reason)
    result["finished"] = time.time()
    return result


def _prune(services: Services, machine: dict[str, Any], dry_run: bool, lock_wait: int, actor: str,
           result: dict[str, Any]) -> None:
    history = _checked_history(services, machine["id"])
    if history and history["frozen_at"] and history["released_at"] is None:
        result.update(result="frozen", reason=(
            f"its history was rolled back ({history['frozen_reason']}); release with "
            f"`homesync-server machine release --machine {machine['id']}`"))
        return
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
    # Times the server observed; flagged archives (a claimed time outside their session)
    # are neither counted nor deleted: they stay for the admin to look at.
    trusted = repo.trusted()
    result["flagged"] = sorted(trusted.flagged)
    plan = retention.plan(trusted.archives, services.config.retention.policy_for(machine["owner"]), held)
    if held & set(plan.delete):  # retention.plan guarantees this; a hold is too important to trust one place
        raise HomesyncError(f"refusing to prune {machine['id']}: the plan would delete a held archive")
    result.update(kept=dict(plan.keep), deleted=list(plan.delete))
    if dry_run or not plan.delete:
        result["result"] = "dry run" if dry_run else "nothing to prune"
        return
    services.index.mark_pruning(machine["id"], list(plan.delete))
    _delete(repo, list(plan.delete))
    services.index.remove_archives(machine["id"], list(plan.delete), event(
        "prune", actor, machine["id"], deleted=list(plan.delete), kept=len(plan.keep)))
    repo.run(borg.make_compact_command(repo.location, repo.lock_wait), secret=False)
    result["result"] = "pruned"


def _checked_history(services: Services, machine_id: str) -> dict[str, Any] | None:
    """Return the machine's repository state once no post-session check is pending
    (waiting up to CHECK_WAIT seconds for serve to run it); raise HomesyncError if one
    still is: archives no check has seen have no observed time yet."""
    deadline = time.monotonic() + CHECK_WAIT
    while True:
        history = services.index.history(machine_id)
        if not history or history["pending_since"] is None:
            return history
        if time.monotonic() > deadline:
            raise HomesyncError(f"the check after {machine_id}'s last session has not run yet",
                                "is `homesync-server serve` running? It runs the check; prune again later")
        time.sleep(0.5)


def _delete(repo: escrowed.Repository, names: list[str]) -> None:
    """Delete archives with borg, a batch per call."""
    for start in range(0, len(names), BATCH):
        repo.run(borg.make_delete_command(repo.location, names[start:start + BATCH], repo.lock_wait))
