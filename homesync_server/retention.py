"""Retention: which archives a prune keeps. A pure function of the archive time series,
the policy and the legal holds, with the semantics of `borg prune` (periods counted in
UTC), plus the [retention] section of server.toml that states the policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Iterable, Mapping

# borg prune's rules, in the order borg applies them; each counts one archive per period.
RULES = (("hourly", "%Y-%m-%d %H"), ("daily", "%Y-%m-%d"), ("weekly", "%G-%V"),
         ("monthly", "%Y-%m"), ("yearly", "%Y"))
_CHECKPOINT = re.compile(r"\.checkpoint(\.\d+)?\Z")
HOLD_ALL = "*"  # a hold on every archive of a machine, present and future


@dataclass(frozen=True)
class Policy:
    """How many periods of each kind to keep one archive for (-1: every period)."""

    hourly: int = 24
    daily: int = 14
    weekly: int = 8
    monthly: int = 12
    yearly: int = 0

    def keeps_something(self) -> bool:
        """Return whether the policy keeps at least one archive (an all-zero policy would
        delete everything)."""
        return any(getattr(self, rule) != 0 for rule, _ in RULES)


@dataclass(frozen=True)
class Archive:
    """One archive of a repository: its name and its time (epoch seconds, UTC)."""

    name: str
    time: float


@dataclass(frozen=True)
class Plan:
    """What a prune does: the archives it keeps (with why) and those it deletes."""

    keep: Mapping[str, str]
    delete: tuple[str, ...]  # oldest first


def is_checkpoint(name: str) -> bool:
    """Return whether an archive name is one of borg's checkpoints (an incomplete backup)."""
    return _CHECKPOINT.search(name) is not None


def plan(archives: Iterable[Archive], policy: Policy, held: Iterable[str] = ()) -> Plan:
    """Given a repository's archives, the policy and the held archive names (HOLD_ALL
    holds them all), return what to keep and what to delete: exactly what `borg prune`
    with the same keep rules would decide, except that held archives are always kept.
    Raise ValueError for a policy that keeps nothing."""
    if not policy.keeps_something():
        raise ValueError("a retention policy must keep at least one period")
    newest_first = sorted(archives, key=lambda a: (a.time, a.name), reverse=True)
    complete = [a for a in newest_first if not is_checkpoint(a.name)]
    keep = _kept_by_rules(complete, policy)
    keep.update(_kept_checkpoints(newest_first))
    held = set(held)
    for archive in newest_first:
        if archive.name in held or HOLD_ALL in held:
            keep.setdefault(archive.name, "held")
    delete = tuple(a.name for a in reversed(newest_first) if a.name not in keep)
    return Plan(keep, delete)


def _kept_by_rules(newest_first: list[Archive], policy: Policy) -> dict[str, str]:
    """Apply each rule in borg's order, each skipping archives an earlier rule kept."""
    kept: dict[str, str] = {}
    for rule, pattern in RULES:
        _split(newest_first, rule, pattern, getattr(policy, rule), kept)
    return kept


def _split(newest_first: list[Archive], rule: str, pattern: str, n: int, kept: dict[str, str]) -> None:
    """Keep the newest archive of each of the n newest periods (borg's prune_split),
    and the oldest archive when fewer than n periods exist."""
    if n == 0:
        return
    count, last = 0, None
    for archive in newest_first:
        period = datetime.fromtimestamp(archive.time, timezone.utc).strftime(pattern)
        if period == last:
            continue
        last = period
        if archive.name not in kept:
            count += 1
            kept[archive.name] = f"{rule} #{count}"
            if count == n:
                return
    if newest_first and count < n and newest_first[-1].name not in kept:
        kept[newest_first[-1].name] = f"{rule} #{count + 1} (oldest)"


def _kept_checkpoints(newest_first: list[Archive]) -> dict[str, str]:
    """Keep the newest checkpoint only while no complete archive is newer (borg does the
    same: the next backup resumes from it)."""
    if newest_first and is_checkpoint(newest_first[0].name):
        return {newest_first[0].name: "newest checkpoint"}
    return {}


@dataclass(frozen=True)
class Settings:
    """The [retention] section: the site's policy, per-user overrides, and the
    thresholds of the mass-change (ransomware) signal."""

    site: Policy = Policy()
    users: Mapping[str, Policy] = field(default_factory=dict)
    mass_change_share: float = 0.5    # the newest archive wrote at least this share of its data anew
    mass_change_factor: float = 4.0   # ... and at least this many times the machine's usual share

    def policy_for(self, user: str) -> Policy:
        """Return the policy that applies to one user's machines."""
        return self.users.get(user, self.site)


_KEEP_KEYS = {f"keep_{f.name}": f.name for f in fields(Policy)}


def settings_from_toml(section: dict, problems: list[str]) -> Settings:
    """Given the parsed [retention] table, return the settings; append every problem
    found to problems (the caller reports them all at once)."""
    if not isinstance(section, dict):
        problems.append("[retention] must be a table")
        return Settings()
    site = _policy(section, Policy(), "[retention]", problems,
                   extra={"mass_change_share", "mass_change_factor", "users"})
    users = {}
    for user, table in (section.get("users") or {}).items():
        if not isinstance(table, dict):
            problems.append(f"[retention.users] {user!r} must be a table")
            continue
        users[user] = _policy(table, site, f"[retention.users.{user}]", problems)
    share = _number(section, "mass_change_share", 0.5, problems, 0.0, 1.0)
    factor = _number(section, "mass_change_factor", 4.0, problems, 1.0, 1000.0)
    return Settings(site, users, share, factor)


def _policy(table: dict, base: Policy, where: str, problems: list[str], extra: set[str] = frozenset()) -> Policy:
    changes = {}
    for key, value in table.items():
        if key in extra:
            continue
        if key not in _KEEP_KEYS:
            problems.append(f"{where} unknown key {key!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < -1:
            problems.append(f"{where} {key} must be a whole number, -1 (every period) or more")
        else:
            changes[_KEEP_KEYS[key]] = value
    policy = replace(base, **changes)
    if not policy.keeps_something():
        problems.append(f"{where} keeps nothing: set at least one keep_* above 0")
    return policy


def _number(table: dict, key: str, default: float, problems: list[str], low: float, high: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        problems.append(f"[retention] {key} must be a number from {low:g} to {high:g}")
        return default
    return float(value)
