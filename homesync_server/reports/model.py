"""The whole report as one value, which every renderer takes: when it was made, under
which policy, for whom, and its fleet, summary, activity, storage growth and
assurance parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homesync_server.reports.activity import Activity
from homesync_server.reports.assurance import NO_ASSURANCE, Assurance
from homesync_server.reports.fleet import Fleet, Summary
from homesync_server.reports.growth import Growth
from homesync_server.reports.policy import NO_POLICY, FleetPolicy
from homesync_server.reports.status import HOUR, Policy


@dataclass(frozen=True)
class Report:
    """Everything a report shows."""

    generated_at: float
    policy: Policy
    user: str | None
    directory_error: str  # why display names and leavers are unknown; '' when the directory answered
    machines: Fleet  # every machine, by owner and name
    summary: Summary
    activity: Activity
    growth: Growth
    needs_attention: int  # how many machines make the report exit non-zero (MachineRow.alarming)
    assurance: Assurance = NO_ASSURANCE  # drills and mass-change freezes
    fleet_policy: FleetPolicy = NO_POLICY  # the versions machines applied (issue 19)

    def __post_init__(self) -> None:
        if not isinstance(self.machines, Fleet):  # rows, as a test writes them
            object.__setattr__(self, "machines", Fleet.of(self.machines))

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data (what --format json prints), but for the
        machines, whose list is left empty in its place: the JSON renderer writes it."""
        return {"generated_at": self.generated_at, "user": self.user,
                "policy": {"warn_age_hours": self.policy.warn_seconds / HOUR,
                           "critical_age_hours": self.policy.critical_seconds / HOUR},
                "directory_error": self.directory_error, "alarming": self.needs_attention,
                "summary": self.summary.as_dict(),
                "machines": [],
                "activity": self.activity.as_dict(), "storage_over_time": self.growth.as_dict(),
                **self.assurance.as_dict(), **self.fleet_policy.as_dict()}
