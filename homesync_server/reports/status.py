"""A machine's backup status, as a pure function of its state, its owner and the age
of its newest successful backup: OK, STALE, CRITICAL, NEVER, RETIRED, REPLACED or
OWNER GONE. The report, the metrics and the exit status all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "OK"
STALE = "STALE"
CRITICAL = "CRITICAL"
NEVER = "NEVER"
RETIRED = "RETIRED"
REPLACED = "REPLACED"
OWNER_GONE = "OWNER GONE"

# Most urgent first: the order of the report's tables and the metrics' status labels.
BY_SEVERITY = (CRITICAL, NEVER, STALE, OWNER_GONE, OK, REPLACED, RETIRED)
# Machines that are expected to back up: the denominator of "protected within policy".
EXPECTED = (OK, STALE, CRITICAL, NEVER)
HOUR = 3600.0


@dataclass(frozen=True)
class Policy:
    """How old a newest backup may be: past warn_seconds it is STALE, past
    critical_seconds CRITICAL (strictly past: an age equal to a threshold is not)."""

    warn_seconds: float
    critical_seconds: float

    @classmethod
    def from_hours(cls, warn: float, critical: float) -> "Policy":
        """Given the [report] ages in hours, return the policy; raise ValueError unless
        0 < warn < critical."""
        policy = cls(warn * HOUR, critical * HOUR)
        if not 0 < policy.warn_seconds < policy.critical_seconds:  # in seconds: hours may round together
            raise ValueError("the ages need 0 < warn < critical")
        return policy


def backup_age(last_backup: float | None, now: float) -> float | None:
    """Return how old the newest backup is in seconds (never negative), or None."""
    return None if last_backup is None else max(0.0, now - last_backup)


def status(state: str, owner_gone: bool, age: float | None, policy: Policy) -> str:
    """Given a machine's state, whether its owner left and the age of its newest
    successful backup (seconds, None for never), return its status."""
    if state == "retired":
        return RETIRED
    if state == "replaced":
        return REPLACED
    if owner_gone:
        return OWNER_GONE
    if age is None:
        return NEVER
    if age > policy.critical_seconds:
        return CRITICAL
    if age > policy.warn_seconds:
        return STALE
    return OK


# The statuses for which alarming() can be true (the others never alarm).
MAY_ALARM = frozenset((CRITICAL, NEVER))


def alarming(machine_status: str, enrolled: float, now: float, policy: Policy) -> bool:
    """Return whether a machine makes the report exit non-zero: CRITICAL, or NEVER
    backed up although enrolled longer ago than the critical age."""
    if machine_status == CRITICAL:
        return True
    return machine_status == NEVER and now - enrolled > policy.critical_seconds


def severity(machine_status: str) -> int:
    """Return the rank of a status for sorting, most urgent first."""
    return BY_SEVERITY.index(machine_status)
