"""`homesync-server policy`: the fleet policy agents follow. Each change stores a new
version holding every layer (site < group < user < machine); `show` gives the effective
policy of a machine, user or group and where each value comes from. Validated with the
agent's own schema (homesync.settings), so a policy holds nothing an agent would refuse.
"""

from __future__ import annotations

import logging
import tomllib
from typing import Any

from homesync import fleet_policy, names, settings
from homesync.errors import InvalidPolicyError, PolicyChangedError, UsageError
from homesync_server import policies, policy_copy
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.services import Services

log = logging.getLogger(__name__)


def parse(text: str, name: str) -> dict[str, Any]:
    """Given a policy file's text, return its settings as {"table.key": raw value}; raise
    InvalidPolicyError naming the file and every problem in one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidPolicyError(f"{name}: not TOML: {e}", "nothing was stored") from None
    _, problems = settings.check_policy(raw)
    if problems:
        raise InvalidPolicyError(f"{name}: " + "; ".join(problems), "nothing was stored; the version is unchanged")
    return settings.flatten(raw)


def set_layer(layout: Layout, text: str, name: str, scope: str, target: str = "",
              expect_version: int | None = None) -> dict[str, Any]:
    """Replace one layer with the policy in text; return {version, changed}. Raise
    InvalidPolicyError (nothing stored), NotFoundError for an unknown machine,
    PolicyChangedError if expect_version is no longer the newest."""
    values = parse(text, name)
    with Services.open(layout) as services:
        target = _target(services, scope, target)
        current = services.index.policy_version()
        number = current["version"] if current else 0
        if expect_version is not None and expect_version != number:
            raise PolicyChangedError(f"the policy changed while it was edited (now version {number})",
                                     "run `policy edit` again")
        layers = fleet_policy.Layers.from_json(current["layers"]) if current else fleet_policy.Layers()
        before = layers.layer(scope, target)
        changed = sorted(k for k in set(before) | set(values) if before.get(k) != values.get(k))
        if not changed:
            return {"version": number, "changed": []}
        actor = admin_actor()
        version = services.index.add_policy_version(
            scope, target, layers.with_layer(scope, target, values).as_json(), changed, actor,
            event("policy_set", actor, target if scope == fleet_policy.MACHINE else None, "",
                  scope=scope, target=target, changed=changed))
        policy_copy.save(layout.data, services.index)  # what a rebuilt index gets the policy back from
        log.info("fleet policy version %d: %s %s: %s", version, scope, target, ", ".join(changed))
        return {"version": version, "changed": changed}


def current_layer(layout: Layout, scope: str, target: str = "") -> tuple[int, str]:
    """Return (version, the layer as TOML text) for `policy edit`."""
    with Services.open(layout) as services:
        target = _target(services, scope, target)
        current = services.index.policy_version()
    layers = fleet_policy.Layers.from_json(current["layers"]) if current else fleet_policy.Layers()
    return (current["version"] if current else 0), to_toml(settings.unflatten(layers.layer(scope, target)))


def show(layout: Layout, machine: str | None = None, user: str | None = None,
         group: str | None = None) -> dict[str, Any]:
    """Return the effective policy for a machine, a user or a group (none: the site's),
    with the source of every value."""
    with Services.open(layout) as services:
        return policies.effective_for(services, machine=machine, user=user, group=group)


def history(layout: Layout) -> list[dict[str, Any]]:
    """Return every version: number, when, who, which layer, which keys changed."""
    with Services.open(layout) as services:
        return [{k: v[k] for k in ("version", "at", "actor", "scope", "target", "changed")}
                for v in services.index.policy_versions()]


def set_group(layout: Layout, group: str, user: str, member: bool) -> dict[str, Any]:
    """Put a user in a policy group (or take them out); audited."""
    group, user = _group_name(group), names.user_name(user)
    with Services.open(layout) as services:
        actor = admin_actor()
        changed = services.index.set_group_member(group, user, member, event(
            "policy_group_add" if member else "policy_group_remove", actor, None, "", group=group, user=user))
        if changed:
            policy_copy.save(layout.data, services.index)
        return {"group": group, "user": user, "member": member, "changed": changed}


def group_list(layout: Layout) -> list[dict[str, Any]]:
    with Services.open(layout) as services:
        return services.index.group_members()


def _target(services: Services, scope: str, target: str) -> str:
    if scope == fleet_policy.SITE:
        return ""
    if scope == fleet_policy.MACHINE:
        return policies.machine_row(services, target)["id"]
    if scope == fleet_policy.USER:
        return names.user_name(target)
    return _group_name(target)


def _group_name(group: str) -> str:
    if not group or len(group) > 256 or any(ord(c) < 32 for c in group):
        raise UsageError(f"bad group name {group!r}")
    return group


def to_toml(document: dict[str, dict[str, Any]]) -> str:
    """Return {table: {key: value}} as TOML (strings, numbers, bools and lists of them)."""
    import json
    lines = []
    for table, keys in document.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in keys.items()]
        lines.append("")
    return "\n".join(lines)


