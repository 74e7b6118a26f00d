"""The mass-change (ransomware) flag of a machine: raised when its newest archive wrote
an unusually large share of its data anew (ransomware.py decides), freezing its pruning
until an admin releases it. The flag is kept in the index and in the repository's
metadata file, so a reindex brings it back.
"""

from __future__ import annotations

import time
from typing import Any

from homesync_server import ransomware
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
