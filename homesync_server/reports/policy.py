"""The fleet-policy part of the report, pure: the newest policy version, the version each
machine applied, and the machines that have not applied the newest within a day of
reaching the server since it was made (they are not following the fleet's settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import lt
from typing import Any

DAY = 86400.0


@dataclass(frozen=True)
class FleetPolicy:
    newest: int = 0
    newest_at: float | None = None
    applied: dict[str, int] = field(default_factory=dict)  # machine id -> version
    lagging: list[dict[str, Any]] = field(default_factory=list)  # {id, applied, last_seen}

    def as_dict(self) -> dict[str, Any]:
        return {"fleet_policy": {"newest_version": self.newest, "newest_at": self.newest_at,
                                 "applied_versions": self.applied, "lagging": self.lagging}}


NO_POLICY = FleetPolicy()


def fleet_policy(newest: dict[str, Any] | None, machines: dict[str, list], now: float) -> FleetPolicy:
    """Given the newest version (or None), the machines the report is about column by
    column as the index gives them (Index.fleet_columns: id, state, policy_version,
    policy_contact, last_seen) and the time, return the report's policy part. A machine
    lags when the newest version is over a day old, the machine reached the server after
    it was made, and it still runs an older one. Columns, not a dict per machine: a
    fleet has 100,000 machines."""
    if newest is None:
        return NO_POLICY
    version, made = newest["version"], newest["at"]
    active = list(map("active".__eq__, machines["state"]))
    ids, applied_versions = list(compress(machines["id"], active)), list(compress(machines["policy_version"], active))
    applied = dict(zip(ids, applied_versions))
    lagging = []
    if now - made > DAY:
        # only the machines on an older version (few, in a fleet that follows) are looked at and sorted
        older = list(map(lt, applied_versions, repeat(version)))
        for machine_id, applied_version, contact, seen in sorted(zip(
                compress(ids, older), compress(applied_versions, older),
                compress(compress(machines["policy_contact"], active), older),
                compress(compress(machines["last_seen"], active), older))):
            seen = max(contact or 0, seen or 0)
            if seen > made:
                lagging.append({"id": machine_id, "applied": applied_version, "last_seen": seen})
    return FleetPolicy(version, made, applied, lagging)
