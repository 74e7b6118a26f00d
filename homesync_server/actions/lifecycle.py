"""`homesync-server machine retire|rename|transfer`: an admin changes a machine's life.
Retire refuses its key from then on (its backups stay restorable by its owner); rename
follows the rules of enrollment; transfer gives it to another user. Retire and transfer
end the machine's restore grants; the server closes the sessions they no longer allow. The repository's
metadata file changes with the index, so a reindex keeps the change; each is audited.
"""

from __future__ import annotations

from typing import Any

from homesync import names
from homesync.errors import ConflictError, NotFoundError
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.services import Services


def retire(layout: Layout, machine_id: str) -> dict[str, Any]:
    """Retire a machine: its key is refused from now on. Raise ConflictError if it is already."""
    with Services.open(layout) as services:
        machine = _machine(services, machine_id)
        if machine["state"] == "retired":
            raise ConflictError(f"{machine_id} is already retired")
        _change(services, machine, {"state": "retired"}, {"state": "retired"},
                event("machine_retire", admin_actor(), machine_id, name=machine["name"], owner=machine["owner"]))
        services.grants.end(machine_id)  # its live sessions see the change and close
        return services.index.machine(machine_id)


def rename(layout: Layout, machine_id: str, new_name: str) -> dict[str, Any]:
    """Give a machine a new display name (the rules of enrollment: valid, unique per
    owner). Raise InvalidNameError or ConflictError."""
    with Services.open(layout) as services:
        machine = _machine(services, machine_id)
        name = names.machine_name(new_name)
        key = names.machine_name_key(name)
        if key != names.machine_name_key(machine["name"]) and services.index.name_taken(machine["owner"], key):
            raise ConflictError(f"{machine['owner']} already has a computer named {name!r}", "choose another name")
        _change(services, machine, {"name": name}, {"name": name, "name_key": key},
                event("machine_rename", admin_actor(), machine_id, old=machine["name"], new=name))
        return services.index.machine(machine_id)


def transfer(layout: Layout, machine_id: str, new_owner: str) -> dict[str, Any]:
    """Give a machine to another user the identity backend knows. Raise NotFoundError
    for an unknown user, ConflictError if they have a machine of the same name,
    IdentityUnavailableError if the directory cannot be asked."""
    with Services.open(layout) as services:
        machine = _machine(services, machine_id)
        owner = names.user_name(new_owner)
        if owner == machine["owner"]:
            raise ConflictError(f"{machine_id} already belongs to {owner}")
        person = services.identity.lookup(owner)
        if person is None:
            raise NotFoundError(f"no user {owner!r}", "add the user first, or check the name")
        if services.index.name_taken(owner, names.machine_name_key(machine["name"])):
            raise ConflictError(f"{owner} already has a computer named {machine['name']!r}",
                                "rename one of them first")
        services.index.record_user(owner, person.display_name)
        _change(services, machine, {"owner": owner}, {"owner": owner},
                event("machine_transfer", admin_actor(), machine_id, old_owner=machine["owner"], new_owner=owner))
        services.grants.end(machine_id)  # the old owner's restore keys, and their live sessions
        return services.index.machine(machine_id)


def _machine(services: Services, machine_id: str) -> dict[str, Any]:
    machine = services.index.machine(machine_id) if names.is_machine_id(machine_id) else None
    if machine is None:
        raise NotFoundError(f"no machine {machine_id}", "see `homesync-server machines`")
    return machine


def _change(services: Services, machine: dict[str, Any], metadata: dict[str, str], columns: dict[str, str],
            audit: dict[str, Any]) -> None:
    """Change the repository's metadata file, then the index (with the audit event);
    put the metadata back if the index refuses."""
    before = services.repos.metadata(machine["id"])
    services.repos.update_metadata(machine["id"], **metadata)
    try:
        services.index.change_machine(machine["id"], columns, audit)
    except BaseException:
        services.repos.write_metadata(before)
        raise
