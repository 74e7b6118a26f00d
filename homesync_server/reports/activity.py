"""The activity part of the report: what happened in a time range, from the audit
log (enrollments, restores, passphrase releases, adoptions, failed logins, admin
actions), each event told in one line. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homesync.console import human_size

# Backups are summed up by the fleet part, and each is followed by the server's check of
# its repository; listing each one would drown the rest.
SKIPPED = ("backup", "repository_check")
LIMIT = 5000  # events listed at most (the counts cover the whole range)


@dataclass(slots=True)
class Event:
    """One audit event as the report lists it."""

    id: int
    at: float
    action: str
    actor: str
    machine_id: str | None
    machine: str
    owner: str
    source: str
    what: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "action": self.action, "actor": self.actor,
                "machine_id": self.machine_id, "machine": self.machine, "owner": self.owner,
                "source": self.source, "what": self.what, "detail": self.detail}


@dataclass(frozen=True)
class Activity:
    """The events of a time range: counts per action, and the newest events listed."""

    since: float
    until: float
    counts: dict[str, int]
    events: list[Event]

    @property
    def truncated(self) -> bool:
        return len(self.events) < sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "counts": self.counts,
                "truncated": self.truncated, "events": [e.as_dict() for e in self.events]}

    def as_values(self) -> tuple:
        """Return the activity as plain values (what marshal can carry); from_values reverses it."""
        return self.since, self.until, self.counts, [tuple(e.as_dict().values()) for e in self.events]

    @classmethod
    def from_values(cls, values: tuple) -> "Activity":
        since, until, counts, events = values
        return cls(since, until, counts, [Event(*event) for event in events])


def events(rows: list[dict[str, Any]]) -> list[Event]:
    """Given audit rows joined with their machine, return the events to list."""
    return [Event(r["id"], r["at"], r["action"], r["actor"], r["machine_id"], r["machine_name"] or "",
                  r["machine_owner"] or "", r["source"], describe(r["action"], r["detail"]), r["detail"])
            for r in rows]


def describe(action: str, detail: dict[str, Any]) -> str:
    """Return one line saying what an event of this action did, from its detail."""
    teller = _TELLERS.get(action)
    try:
        return teller(detail) if teller else _generic(detail)
    except (KeyError, TypeError, ValueError):
        return _generic(detail)


def _restore(d: dict[str, Any]) -> str:
    return (f"restored {d['archive']} onto host {d['hostname']!r}: {d['files']} files, "
            f"{human_size(d['bytes'])} in {float(d['seconds']):.0f} s ({d['result']})")


def _restore_failed(d: dict[str, Any]) -> str:
    return (f"restore of {d['archive']} onto host {d['hostname']!r} {d['result']} after {d['files']} files, "
            f"{human_size(d['bytes'])}: {d['error']}")


def _generic(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(detail.items()))


_TELLERS = {
    "restore": _restore,
    "restore_failed": _restore_failed,
    "passphrase_release": lambda d: f"passphrase released to the {d['to']}",
    "enroll": lambda d: f"enrolled {d['name']!r} from host {d['hostname']!r}",
    "adopt": lambda d: f"adopted by host {d['hostname']!r} (was {d.get('old_hostname', '')!r})",
    "login_failed": lambda d: f"login failed: {d['reason']}" + (f" ({d['refused']} attempts refused)"
                                                                if "refused" in d else ""),
    "repository_open": lambda d: f"repository opened for {d['purpose']}",
    "user_add": lambda d: f"added user {d['user']}" + (" (admin)" if d.get("admin") else ""),
}

