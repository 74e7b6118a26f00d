"""The fleet-policy part of the report, pure: the newest policy version, the version each
machine applied, and the machines that have not applied the newest within a day of
reaching the server since it was made (they are not following the fleet's settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


def fleet_policy(newest: dict[str, Any] | None, states: dict[str, dict[str, Any]], now: float,
                 user: str | None = None) -> FleetPolicy:
    """Given the newest version (or None), each machine's policy state from the index, the
    time and whose machines the report is about (None: everyone's), return the report's policy part. A machine lags when
    the newest version is over a day old, the machine reached the server after it was
    made, and it still runs an older one."""
    if newest is None:
        return NO_POLICY
    applied = {m: s["policy_version"] for m, s in states.items()
               if s["state"] == "active" and (user is None or s["owner"] == user)}
    lagging = []
    for machine_id, version in sorted(applied.items()):
        seen = max(states[machine_id]["policy_contact"] or 0, states[machine_id]["last_seen"] or 0)
        if version < newest["version"] and seen > newest["at"] and now - newest["at"] > DAY:
            lagging.append({"id": machine_id, "applied": version, "last_seen": seen})
    return FleetPolicy(newest["version"], newest["at"], applied, lagging)
