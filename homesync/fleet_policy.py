"""Fleet policy layers, pure: merging the server's layers (site < group < user < machine)
into one effective policy with the source of every value, and laying a computer's own
config.toml over it where the policy lets users override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homesync import settings

SITE, GROUP, USER, MACHINE = "site", "group", "user", "machine"
LOCAL, IGNORED, DEFAULT = "local override", "local (ignored: not overridable)", "default"
SCOPES = (SITE, GROUP, USER, MACHINE)
# config.toml's value applies while the policy does not set the key (and never over it).
LOCAL_UNLESS_SET = frozenset({"server.addresses"})


@dataclass(frozen=True)
class Layers:
    """Every layer of the policy as stored: {"table.key": raw TOML value} each."""

    site: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> "Layers":
        return cls(data.get(SITE, {}), data.get(GROUP, {}), data.get(USER, {}), data.get(MACHINE, {}))

    def as_json(self) -> dict:
        return {SITE: self.site, GROUP: self.groups, USER: self.users, MACHINE: self.machines}

    def layer(self, scope: str, target: str = "") -> dict[str, Any]:
        """Return one layer ({} if it has none)."""
        if scope == SITE:
            return dict(self.site)
        return dict(self._by_scope(scope).get(target, {}))

    def with_layer(self, scope: str, target: str, values: dict[str, Any]) -> "Layers":
        """Return these layers with one replaced (an empty one removed)."""
        if scope == SITE:
            return Layers(dict(values), self.groups, self.users, self.machines)
        changed = {k: v for k, v in self._by_scope(scope).items() if k != target}
        if values:
            changed[target] = dict(values)
        parts = {GROUP: self.groups, USER: self.users, MACHINE: self.machines, scope: changed}
        return Layers(self.site, parts[GROUP], parts[USER], parts[MACHINE])

    def _by_scope(self, scope: str) -> dict[str, dict[str, Any]]:
        return {GROUP: self.groups, USER: self.users, MACHINE: self.machines}[scope]


def effective(layers: Layers, groups: list[str] = (), user: str | None = None,
              machine: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Given the layers and who asks, return the effective {"table.key": value} and the
    source of each ("site", "group G", "user U", "machine ID"). Groups apply in
    alphabetical order, so the result does not depend on the directory's order."""
    stack = [(SITE, layers.site)]
    stack += [(f"{GROUP} {g}", layers.groups[g]) for g in sorted(set(groups)) if g in layers.groups]
    if user is not None and user in layers.users:
        stack.append((f"{USER} {user}", layers.users[user]))
    if machine is not None and machine in layers.machines:
        stack.append((f"{MACHINE} {machine}", layers.machines[machine]))
    values, sources = {}, {}
    for source, layer in stack:
        for key, value in layer.items():
            values[key], sources[key] = value, source
    return values, sources


def over_local(policy: dict[str, Any], sources: dict[str, str], local: dict) -> tuple[dict, dict[str, str]]:
    """Given the effective policy with its sources and config.toml's tables, return the
    tables the agent runs with and the source of every setting (default, a policy layer,
    local override, or local ignored). A local value wins only where the policy lets
    users override it (user_may_override; not set: every overridable setting)."""
    allowed = policy.get("policy.user_may_override")
    allowed = tuple(allowed) if allowed is not None else None
    merged = {table: dict(keys) if isinstance(keys, dict) else keys for table, keys in local.items()}
    origin: dict[str, str] = {}
    local_flat = {f"{t}.{k}": v for t, keys in settings.SETTINGS.items() if isinstance(local.get(t), dict)
                  for k, v in local[t].items() if k in keys}  # the identity ([server] address, …) is not a setting
    for dotted in sorted(set(policy) | set(local_flat)):
        table, key = dotted.split(".", 1)
        local_wins = dotted not in policy if dotted in LOCAL_UNLESS_SET else settings.may_override(dotted, allowed)
        if dotted in local_flat and local_wins:
            origin[dotted] = LOCAL
            continue
        if dotted in local_flat:
            merged[table].pop(key, None)
            origin[dotted] = IGNORED
        if dotted in policy:
            if dotted == "server.addresses":
                merged.setdefault("server", {}).update(address=policy[dotted][0], addresses=list(policy[dotted]))
            elif table in ("network", "agent", "backup"):
                merged.setdefault(table, {})[key] = policy[dotted]
            origin[dotted] = sources.get(dotted, SITE) + (" (local value ignored)" if dotted in local_flat else "")
    return merged, origin


def settings_sources(origin: dict[str, str]) -> dict[str, str]:
    """Return the source of every setting of the schema: those not named are defaults."""
    every = [f"{t}.{k}" for t, keys in settings.SETTINGS.items() for k in keys]
    return {dotted: origin.get(dotted, DEFAULT) for dotted in every}


def has_network_rules(values: dict[str, Any]) -> bool:
    """Return True if any corporate-network rule is set in flat values."""
    return any(values.get(f"network.{k}") for k in ("corporate_domains", "corporate_ssids", "corporate_connections"))
