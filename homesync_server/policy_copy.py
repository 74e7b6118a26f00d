"""The fleet policy's copy beside the index: every version and the local group members
in <data>/policy.json, rewritten whole (atomically, 0600) after each change. Policies
and groups are in no repository, so this file (or the index `reindex --force` sets
aside, when SQLite can still read it) is where a rebuilt index gets them back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from homesync.files import write_atomically
from homesync_server.index_store import IndexStore as Index

log = logging.getLogger(__name__)

NAME = "policy.json"
FORMAT = 1


def path(data: Path) -> Path:
    return data / NAME


def save(data: Path, index: Index) -> None:
    """Write every policy version and group member the index holds to the copy. A copy
    that cannot be written is logged, not raised: the change is stored in the index."""
    document = {"format": FORMAT, "versions": index.policy_versions(), "group_members": index.group_members()}
    try:
        write_atomically(path(data), json.dumps(document, sort_keys=True, indent=1).encode(), mode=0o600)
    except OSError as e:
        log.warning("the policy is stored in the index, but its copy %s could not be written (%s): "
                    "a rebuilt index would lack this change", path(data), e.strerror or e)


def read(data: Path) -> dict[str, Any] | None:
    """Return the copy ({versions, group_members}), or None if there is none or it is unusable."""
    try:
        document = json.loads(path(data).read_text())
        if document.get("format") != FORMAT:
            raise ValueError(f"unknown format {document.get('format')!r}")
        return {"versions": list(document["versions"]), "group_members": list(document["group_members"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("ignoring the policy copy %s: %s", path(data), e)
        return None


def of_index(index: Index) -> dict[str, Any]:
    """Return the versions and group members an index holds (read from one set aside)."""
    return {"versions": index.policy_versions(), "group_members": index.group_members()}


def restore(data: Path, index: Index, set_aside: dict[str, Any] | None) -> dict[str, Any] | None:
    """Bring the policy back into a rebuilt index that has none: from what the index set
    aside held (of_index; None: none, or unreadable) when it holds the most versions,
    else from the copy; rewrite the copy. Return {versions, group_members, from}, or None
    if there was nothing to restore."""
    if index.policy_version() is not None or index.group_members():
        return None  # the rebuilt index has a policy already: never mixed with an older one
    found = [(set_aside, "the index set aside")]
    found.append((read(data), NAME))
    usable = [(policy, source) for policy, source in found if policy and (policy["versions"] or
                                                                          policy["group_members"])]
    if not usable:
        return None
    policy, source = max(usable, key=lambda p: max((v["version"] for v in p[0]["versions"]), default=0))
    index.import_policy(policy["versions"], policy["group_members"])
    save(data, index)
    return {"versions": len(policy["versions"]), "group_members": len(policy["group_members"]), "from": source}
