"""A borg lock left in a repository by a node that died (issue 14): broken before the
next session of that repository, or the next job of the server's own on it, only when
every holder borg's lock files name (BORG_HOST_ID: a node's id) is a node the index
shows dead; never while a holder lives, never for a holder that is not a node, never
for this node's own (borg removes those itself once their process is gone: its host id).
"""

from __future__ import annotations

import logging
from pathlib import Path

from homesync import borg
from homesync.errors import HomesyncError
from homesync_server import index_damage, nodes
from homesync_server.services import Services

logger = logging.getLogger(__name__)
BREAK_TIMEOUT = 60.0


def break_if_dead(services: Services, repository: Path, machine_id: str | None, actor: str = "server") -> bool:
    """Break the lock of repository if only dead nodes hold it, with its audit event
    (borg_lock_broken, naming the holders); return whether it was broken. A failure is
    logged, never raised: borg's own lock wait then says the repository is locked."""
    holders = borg.lock_holders(repository)
    if not holders:
        return False
    hosts = sorted({host for host, _, _ in holders})
    if services.node_id in hosts:  # this node's own (say a drill's while serve is down): borg checks the pid itself
        return False
    try:
        dead = nodes.dead_nodes(services.index, services.config.node.dead_after)
        if not set(hosts) <= dead:
            return False
        borg.run_borg(borg.make_break_lock_command(str(repository)), services.repos.environment(),
                      timeout=BREAK_TIMEOUT)
        services.index.audit("borg_lock_broken", actor, machine_id, "", repository=repository.name,
                             holders=[f"{host}.{pid}-{thread:x}" for host, pid, thread in sorted(holders)],
                             by_node=services.node_id)
    except index_damage.UNUSABLE:
        return False
    except HomesyncError as e:
        logger.error("could not break the lock of %s left by dead node(s) %s: %s", repository.name,
                     ", ".join(hosts), e.line())
        return False
    logger.warning("broke the lock of %s left by dead node(s) %s (audit event borg_lock_broken)",
                   repository.name, ", ".join(hosts))
    return True
