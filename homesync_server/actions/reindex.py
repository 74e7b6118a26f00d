"""`homesync-server reindex`: rebuild a lost index from the repositories, the source of
truth. Each repository's metadata file gives the machine (owner, name, key, state,
holds, mass-change flag); `borg info` with the escrowed passphrase gives its archives.

Approximated: an archive's deduplicated size is what only it references now (borg
info), not what it added when it was made; failed and interrupted backups, agent
states, drill history and the audit log before the loss are not in any repository.
The keys an adopt replaced come from the metadata file and, for adopts made before it
kept them, from the index set aside by `--force` when that one can still be read. The
fleet policy's versions and local groups (in no repository) come from that index set
aside, else from the copy the server keeps beside the index (policy_copy, policy.json).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from homesync import borg, names
from homesync.errors import ConflictError, HomesyncError, IdentityUnavailableError, IndexDamagedError
from homesync_server import config as server_config
from homesync_server import escrowed, observed, policy_copy
from homesync_server.config import Layout
from homesync_server import index_store
from homesync_server.index import admin_actor, event
from homesync_server.retention import is_checkpoint
from homesync_server.services import Services

APPROXIMATED = ["deduplicated_size is what each archive alone references now, not what it added",
                "every archive is indexed as 'success'; failed and interrupted backups are not in the repositories",
                "last_seen is the end of the newest archive; agent states and drill history start afresh",
                "no session was observed: each archive's observed time is its own (claimed) end, bounded by the "
                "time of the reindex; archives claiming a later time are flagged and not counted"]


def reindex(layout: Layout, force: bool = False) -> dict[str, Any]:
    """Rebuild the index from every repository; return what was indexed and what could
    not be. Raise ConflictError if the index still lists machines, IndexDamagedError if
    it is damaged (unless force: it is then set aside first). Stop the server first."""
    refuse_while_serving(layout)
    set_aside, reason = _make_room(layout, force)
    earlier = index_store.read_set_aside(layout, set_aside, lambda index: index.replaced_keys()) if set_aside else None
    earlier_policy = index_store.read_set_aside(layout, set_aside, policy_copy.of_index) if set_aside else None
    with Services.open(layout) as services:
        policy = policy_copy.restore(layout.data, services.index, earlier_policy)
        found = index_repositories(services, services.repos.machine_ids(), admin_actor(), earlier or {},
                                   set_aside=set_aside, reason=reason, policy=policy)
        return dict(found, set_aside=set_aside, policy=policy, approximated=APPROXIMATED)


def index_missing(services: Services, actor: str) -> dict[str, Any] | None:
    """Index every repository whose machine the index does not list (an index lost,
    emptied or replaced behind the server's back); return what was indexed, or None
    if it lacked none."""
    known = services.index.machine_ids()
    missing = [mid for mid in services.repos.machine_ids() if mid not in known]
    if not missing:
        return None
    policy = policy_copy.restore(services.layout.data, services.index, None) if not known else None
    return dict(index_repositories(services, missing, actor, automatic=True, listed_before=len(known), policy=policy),
                missing=len(missing), policy=policy, approximated=APPROXIMATED)


def index_repositories(services: Services, machine_ids: list[str], actor: str,
                       earlier: dict[str, list[dict[str, Any]]] | None = None, **detail: Any) -> dict[str, Any]:
    """Index the machines of these repositories with their archives, holds, flags and
    replaced keys (also those of earlier: from an index set aside), and record it as one
    `reindex` audit event (with detail); return what was indexed and what could not be."""
    problems: list[str] = []
    machines = [m for m in (_machine(services, mid, actor, problems, (earlier or {}).get(mid, []))
                            for mid in machine_ids) if m]
    archives = sum(m["archives"] for m in machines)
    services.index.audit("reindex", actor, machines=len(machines), archives=archives, problems=problems, **detail)
    return {"machines": machines, "archives": archives, "problems": problems}


def refuse_while_serving(layout: Layout) -> None:
    """Raise ConflictError if the server answers on its configured address: it would go
    on writing to the index it has open, whatever reindex writes."""
    host, port = server_config.parse_listen(server_config.load(layout).listen)
    try:
        socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "") else host, port), timeout=1).close()
    except OSError:
        return
    raise ConflictError(f"the server is running (it answers on {host}:{port})", "stop it, then reindex")


def _make_room(layout: Layout, force: bool) -> tuple[str | None, str]:
    """Refuse to rebuild over an index that still lists machines, or is damaged, unless
    forced: then set its files aside (index.sqlite.replaced-<time>, .damaged-<time>).
    Return the name it was set aside as (None: kept) and why."""
    if index_store.missing(layout):
        return None, "lost"
    try:
        count = _machines_listed(layout)
    except IndexDamagedError as e:
        if not force:
            raise IndexDamagedError(e.message, "stop the server and pass --force: reindex then keeps the damaged "
                                               "file aside and rebuilds the index from the repositories") from None
        return index_store.set_aside(layout, "damaged"), "damaged"
    if count and not force:
        raise ConflictError(f"the index {index_store.where(layout)} still lists {count} machines",
                            "reindex rebuilds a lost index; pass --force to replace this one (it is kept aside)")
    return (index_store.set_aside(layout, "replaced"), "replaced") if count else (None, "lost")


def _machines_listed(layout: Layout) -> int:
    """Return how many machines the index lists; raise IndexDamagedError if it is damaged."""
    index = index_store.open_index(layout)
    try:
        index.check_integrity()
        return len(index.machine_ids())
    finally:
        index.close()





def _machine(services: Services, machine_id: str, actor: str, problems: list[str],
             earlier_keys: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Index one repository's machine with its archives, holds, flag and replaced keys;
    return a summary, or None (with the problem noted) if its metadata is unusable."""
    try:
        meta = services.repos.metadata(machine_id)
        name = names.machine_name(meta["name"])
        machine = {k: meta[k] for k in ("id", "owner", "hostname", "public_key", "enrolled")}
    except (OSError, ValueError, KeyError, HomesyncError) as e:
        problems.append(f"{machine_id}: unusable metadata file, machine not indexed: {e}")
        return None
    archives = _archives(services, machine_id, actor, problems)
    machine.update(name=name, state=meta.get("state", "active"),
                   last_seen=max([a["end"] for a in archives], default=meta["enrolled"]))
    services.index.record_user(machine["owner"], _display_name(services, machine["owner"]))
    replaced = _replaced_keys(services, meta, earlier_keys)
    try:
        services.index.import_machine(machine, names.machine_name_key(name), archives, replaced)
    except ConflictError as e:
        problems.append(f"{machine_id}: not indexed: {e.message}")
        return None
    _restore_holds_and_flag(services, meta, actor)
    return {"id": machine_id, "owner": machine["owner"], "name": name, "state": machine["state"],
            "archives": len(archives)}


def _archives(services: Services, machine_id: str, actor: str, problems: list[str]) -> list[dict[str, Any]]:
    """Return the complete archives of a repository as index rows (from `borg info`)."""
    try:
        repo = escrowed.open_repository(services, machine_id, "reindex", actor)
        infos = repo.info()
    except HomesyncError as e:
        problems.append(f"{machine_id}: archives not indexed: {e.line()}")
        return []
    now = time.time()
    return [dict({"name": a["name"], "start": borg.borg_time(a["start"]), "end": borg.borg_time(a["end"]),
                  "files": a["stats"]["nfiles"], "original_size": a["stats"]["original_size"],
                  "compressed_size": a["stats"]["compressed_size"],
                  "deduplicated_size": a["stats"]["deduplicated_size"], "result": "success"},
                 **_observed(borg.borg_time(a["start"]), borg.borg_time(a["end"]), now))
            for a in infos if not is_checkpoint(a["name"])]


def _replaced_keys(services: Services, meta: dict[str, Any], earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the keys adopts replaced: the metadata file's, with those only the index
    set aside knew (adopts before the file kept them) written back into the file."""
    kept = [k for k in meta.get("replaced_keys", []) if {"public_key", "replaced_at", "hostname"} <= k.keys()]
    known = {k["public_key"] for k in kept}
    more = [k for k in earlier if k["public_key"] not in known]
    if more:
        kept = sorted(kept + more, key=lambda k: k["replaced_at"])
        services.repos.update_metadata(meta["id"], replaced_keys=kept)
    return kept


def _observed(start: float, end: float, now: float) -> dict[str, Any]:
    """Return the observed time and flag of an archive no session was watched for: its
    own end, bounded by now; one claiming a time after now is flagged."""
    if start > now + observed.TOLERANCE:
        return {"observed": now, "flag": observed.claim_problem(start, 0.0, now) + " (found by reindex)"}
    return {"observed": min(end, now), "flag": ""}


def _display_name(services: Services, user: str) -> str:
    try:
        person = services.identity.lookup(user)
    except IdentityUnavailableError:
        return ""
    return person.display_name if person else ""


def _restore_holds_and_flag(services: Services, meta: dict[str, Any], actor: str) -> None:
    """Bring back the legal holds and the mass-change flag the metadata file keeps."""
    machine_id = meta["id"]
    for hold in meta.get("holds", []):
        services.index.add_hold(machine_id, hold["archive"], hold.get("added_by", actor), hold.get("reason", ""),
                                event("hold_add", actor, machine_id, archive=hold["archive"], restored=True))
    flag = meta.get("mass_change")
    if flag:
        row = {"machine_id": machine_id, "archive": flag["archive"], "share": flag["share"],
               "baseline": flag["baseline"], "flagged_at": flag["flagged_at"],
               "released_at": flag.get("released_at"), "released_by": flag.get("released_by") or ""}
        services.index.flag_mass_change(row, event("mass_change", actor, machine_id, archive=flag["archive"],
                                                   restored=True))
