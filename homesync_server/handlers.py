"""homesync's RPC operations on the server. Each handler gets the session's principal
and arguments already checked against the protocol schema, checks what that principal
may do, and acts through the services. Every security-relevant act is audited.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any, Callable

from homesync import names
from homesync.errors import (ConflictError, HomesyncError, InvalidNameError, NotFoundError, PermissionDeniedError,
                             UsageError)
from homesync_server import observed
from homesync_server import mass_change, policies, repository_check
from homesync_server.dispatch import MACHINE, RESTORE, USER, Principal
from homesync_server.index import event
from homesync_server.services import Services

logger = logging.getLogger(__name__)
MIN_PASSPHRASE = 32
RESULTS = ("success", "warning", "failed", "interrupted")
RESTORE_RESULTS = ("success", "failed", "interrupted")
INT64 = (1 << 63) - 1
# A backup report's times must fall between this and a day past the server's clock.
EARLIEST_BACKUP = 946684800.0  # 2000-01-01 UTC
CLOCK_SKEW = 86400.0
Handler = Callable[[Services, Principal, dict, str], Any]


def handle(services: Services, principal: Principal, op: str, args: dict, source: str) -> Any:
    """Run one checked request for principal; return its result or raise HomesyncError."""
    return HANDLERS[op](services, principal, args, source)


def _require(principal: Principal, *kinds: str) -> None:
    if principal.kind not in kinds:
        raise PermissionDeniedError("this login may not do that")


def _owned_machine(services: Services, principal: Principal, machine_id: str) -> dict:
    """Return the machine if principal may see it: its owner by password, or the machine
    itself (or its restore grant) by key. The same error for "not yours" and "none"."""
    machine = services.index.machine(machine_id) if names.is_machine_id(machine_id) else None
    allowed = machine is not None and (
        (principal.kind == USER and machine["owner"] == principal.user)
        or (principal.kind in (MACHINE, RESTORE) and principal.machine_id == machine_id))
    if not allowed:
        raise NotFoundError("no such machine among yours")
    return machine


def whoami(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Say who the session is; a password login also gets its directory full name
    (`homesync setup` suggests a machine name from it)."""
    answer = {"user": principal.user, "kind": principal.kind, "machine_id": principal.machine_id}
    if principal.kind == USER:
        person = services.identity.lookup(principal.user)
        answer["display_name"] = person.display_name if person else ""
    return answer


def enroll(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Register a new machine for the logged-in user and create its repository."""
    _require(principal, USER)
    name = names.machine_name(args["name"])
    hostname = names.hostname(args["hostname"])
    if len(args["passphrase"]) < MIN_PASSPHRASE:
        raise UsageError("the repository passphrase is too short")
    if not args["public_key"].startswith("ssh-ed25519 "):
        raise UsageError("the machine key must be an Ed25519 public key")
    key = names.machine_name_key(name)
    if services.index.name_taken(principal.user, key):
        raise ConflictError(f"you already have a computer named {name!r}", "choose another name")
    person = services.identity.lookup(principal.user)
    services.index.record_user(principal.user, person.display_name if person else "")
    machine = {"id": secrets.token_hex(8), "owner": principal.user, "name": name,
               "hostname": hostname, "public_key": args["public_key"], "enrolled": time.time()}
    services.repos.create(machine, args["passphrase"])
    try:
        services.index.add_machine(machine, key, event("enroll", principal.user, machine["id"], source,
                                                       name=name, hostname=machine["hostname"]))
    except HomesyncError:
        services.repos.discard(machine["id"])
        raise
    try:  # the state a post-session check may roll back to
        repository_check.baseline(services, machine["id"])
    except HomesyncError as e:
        logger.warning("could not record the first good state of %s: %s", machine["id"], e.message)
    logger.info("enrolled machine %s (%r) for %s", machine["id"], name, principal.user)
    return {"machine_id": machine["id"], "name": name}


def machines(services: Services, principal: Principal, args: dict, source: str) -> list[dict]:
    """List the user's machines (a machine key sees only its own machine)."""
    _require(principal, USER, MACHINE)
    rows = services.index.machines(principal.user)
    if principal.kind == MACHINE:
        rows = [r for r in rows if r["id"] == principal.machine_id]
    return [_public_machine(r) for r in rows]


def _public_machine(row: dict) -> dict:
    return {k: row[k] for k in ("id", "name", "hostname", "enrolled", "last_seen", "state",
                                "archives", "last_backup", "last_size", "agent_state", "agent_reason")}


def archives(services: Services, principal: Principal, args: dict, source: str) -> list[dict]:
    """List one of the user's machines' backups."""
    machine = _owned_machine(services, principal, args["machine_id"])
    return services.index.archives(machine["id"])


def backup_report(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Index one backup this machine made."""
    _require(principal, MACHINE)
    if not names.is_archive_name(args["name"]) or args["result"] not in RESULTS:
        raise UsageError("malformed backup report")
    _check_counts(args, "files", "original_size", "compressed_size", "deduplicated_size")
    start, end = args["start"], args["end"]
    if not (math.isfinite(start) and math.isfinite(end) and EARLIEST_BACKUP <= start <= end
            <= time.time() + CLOCK_SKEW):
        raise UsageError("backup report times out of range",
                         "start and end must be real times, start before end, not in the future")
    archive = {k: args[k] for k in ("name", "start", "end", "files", "original_size", "compressed_size",
                                    "deduplicated_size", "result")}
    archive["error"] = args.get("error", "")[:1000]
    archive.update(_observed(services, principal.machine_id, archive))
    services.index.add_archive(principal.machine_id, archive,
                               event("backup", principal.user, principal.machine_id, source,
                                     archive=args["name"], result=args["result"]))
    services.index.touch_machine(principal.machine_id, time.time())
    try:  # a mass change is flagged (and pruning frozen) as soon as its archive arrives
        mass_change.assess(services, services.index.machine(principal.machine_id), "server")
    except HomesyncError as e:
        logger.warning("could not assess %s for a mass change: %s", principal.machine_id, e.message)
    return {"indexed": args["name"]}


def _check_counts(args: dict, *keys: str) -> None:
    """Raise UsageError unless each of keys is a count a database can hold (0 to 2^63-1)."""
    bad = [k for k in keys if not 0 <= args[k] <= INT64]
    if bad:
        raise UsageError(f"report values out of range: {', '.join(bad)}", "counts and sizes are 0 to 2^63-1")


def _check_restore_report(args: dict) -> None:
    """Raise UsageError unless a restore report's figures are counts and a real duration,
    and its result one of RESTORE_RESULTS."""
    if args["result"] not in RESTORE_RESULTS:
        raise UsageError(f"restore report result must be one of {', '.join(RESTORE_RESULTS)}")
    _check_counts(args, "files", "bytes")
    if not (math.isfinite(args["seconds"]) and 0 <= args["seconds"] <= INT64):
        raise UsageError("restore report duration out of range")
    names.hostname(args["hostname"])


def _observed(services: Services, machine_id: str, archive: dict) -> dict:
    """Return the observed time and flag of a reported archive: its claimed end bounded
    by the sessions not checked yet (or the last check) and now; a recovery point
    claiming a time outside is flagged (a failed backup is never counted anyway)."""
    history = services.index.history(machine_id) or {}
    since = history.get("pending_since") or history.get("checked_at") or services.index.machine(machine_id)["enrolled"]
    now = time.time()
    problem = ""
    if archive["result"] in ("success", "warning"):
        problem = (observed.claim_problem(archive["start"], since, now)
                   or observed.claim_problem(archive["end"], since, now))
    return {"observed": now if problem else observed.bounded(archive["end"], since, now), "flag": problem}


def agent_report(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Remember what the agent is doing and why it is not backing up."""
    _require(principal, MACHINE)
    services.index.set_agent_state(principal.machine_id, args["state"][:64], args.get("reason", "")[:500],
                                   args.get("version", "")[:32])
    services.index.touch_machine(principal.machine_id, time.time())
    return {}


def policy_get(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Return this machine's effective fleet policy (version, values, their sources) and
    record the version the agent says it applied."""
    _require(principal, MACHINE)
    shown = policies.effective_for(services, machine=principal.machine_id)
    applied = args.get("applied")
    now = time.time()
    services.index.policy_contact(principal.machine_id, applied if applied is not None and applied >= 0 else None,
                                  now)
    services.index.touch_machine(principal.machine_id, now)
    return {"version": shown["version"], "values": shown["values"], "sources": shown["sources"]}


def restore_grant(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Release a machine's escrowed passphrase to its owner and let a one-off key reach
    its repository for the restore; both are audited."""
    _require(principal, USER)
    machine = _owned_machine(services, principal, args["machine_id"])
    if not args["public_key"].startswith("ssh-ed25519 "):
        raise UsageError("the restore key must be an Ed25519 public key")
    passphrase = services.repos.passphrase(machine["id"])
    services.grants.add(args["public_key"], machine["id"], principal.user)
    services.index.audit("passphrase_release", principal.user, machine["id"], source, to="owner")
    return {"passphrase": passphrase, "machine": _public_machine(
        next(r for r in services.index.machines(principal.user) if r["id"] == machine["id"]))}


def restore_end(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """End one restore grant of the owner's before it lapses (a find or versions is
    done with it); say whether there was one to end."""
    _require(principal, USER)
    machine = _owned_machine(services, principal, args["machine_id"])
    ended = services.grants.end(machine["id"], principal.user, public_key=args["public_key"])
    return {"ended": ended}


def catalog_put(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Store a part of this machine's file catalog (homesync find on the user's other
    computers reads it). It is sealed by the client with the repository passphrase: the
    server only keeps the bytes, beside the repository, at most MAX_CATALOG of them."""
    _require(principal, MACHINE)
    return services.repos.put_catalog(principal.machine_id, args["offset"], args["data"], args["final"])


def catalog_get(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Return a part of a machine's stored file catalog, to its owner or to itself."""
    _require(principal, USER, MACHINE)
    machine = _owned_machine(services, principal, args["machine_id"])
    return services.repos.get_catalog(machine["id"], args["offset"])


def adopt(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Move a machine's identity to the computer that just restored it: its key is
    replaced (the old one is refused from now on) and the backup chain continues."""
    _require(principal, USER)
    machine = _owned_machine(services, principal, args["machine_id"])
    if machine["state"] != "active":
        raise UsageError(f"{machine['name']!r} is {machine['state']} and cannot be adopted")
    if not args["public_key"].startswith("ssh-ed25519 ") or args["public_key"] == machine["public_key"]:
        raise UsageError("adoption needs a new Ed25519 machine key")
    hostname = names.hostname(args["hostname"])
    audit = event("adopt", principal.user, machine["id"], source, old_hostname=machine["hostname"], hostname=hostname)
    metadata = services.repos.metadata(machine["id"])
    # in the repository too, so that reindex can still tell the old computer by whom and when
    replaced = metadata.get("replaced_keys", []) + [
        {"public_key": machine["public_key"], "replaced_at": audit["at"], "hostname": hostname}]
    services.repos.write_metadata(dict(metadata, public_key=args["public_key"], hostname=hostname,
                                       replaced_keys=replaced))
    services.index.replace_machine_key(machine["id"], args["public_key"], hostname, audit)
    services.grants.end(machine["id"])  # the old key's sessions close as the server sees the new one
    logger.info("machine %s adopted by host %r for %s", machine["id"], hostname, principal.user)
    return {"machine_id": machine["id"], "name": machine["name"]}


def restore_report(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Record that a restore happened: who, which machine, onto which host, how much."""
    machine = _owned_machine(services, principal, args["machine_id"])
    services.grants.end(machine["id"], principal.user)  # the restore is done: its one-off keys too
    _check_restore_report(args)
    failed = _failure(args)
    services.index.audit("restore_failed" if failed else "restore", principal.user, machine["id"], source,
                         archive=args["archive"][:64], hostname=args["hostname"],
                         files=args["files"], bytes=args["bytes"], seconds=args["seconds"],
                         result=args["result"], **failed)
    if failed:
        logger.warning("restore of %s by %s onto %r %s: %s", machine["id"], principal.user, args["hostname"],
                       args["result"], failed["error"])
    return {}


def _failure(args: dict) -> dict:
    """Return the audit detail of a restore report's failure ({} for a success)."""
    if args["result"] == "success":
        return {}
    return {"error": args.get("error", "")[:500] or "no reason given"}


def template_grant(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Release a template's passphrase to a user logged in with their password and let a
    one-off key read its repository for the restore; both are audited."""
    _require(principal, USER)
    template = _template(services, args["name"])
    if not args["public_key"].startswith("ssh-ed25519 "):
        raise UsageError("the restore key must be an Ed25519 public key")
    passphrase = services.templates.passphrase(template["id"])
    services.grants.add(args["public_key"], template["id"], principal.user, template=True)
    services.index.audit("passphrase_release", principal.user, None, source, to="template",
                         template=template["id"], name=template["name"])
    # Only the archives the admin published, by name and id: nothing a session might have
    # appended to the repository is ever restored.
    return {"passphrase": passphrase, "template": {
        "id": template["id"], "name": template["name"],
        "archives": {a["name"]: a["id"] for a in template["archives"]}}}


def templates_list(services: Services, principal: Principal, args: dict, source: str) -> list[dict]:
    """List the published templates (name, newest publication) to a user logged in with
    their password: what `homesync setup` offers to start from."""
    _require(principal, USER)
    listed = []
    for template in services.templates.all():
        archives = template.get("archives", [])
        if archives:
            newest = archives[-1]
            listed.append({"name": template["name"], "published": newest.get("published"),
                           "files": newest.get("files"), "original_size": newest.get("original_size")})
    return listed


def _template(services: Services, name: str) -> dict:
    """Return the template called name; raise NotFoundError naming the ones there are."""
    try:
        template = services.templates.find(names.machine_name(name))
    except InvalidNameError:
        template = None
    if template is None:
        known = ", ".join(repr(t["name"]) for t in services.templates.all())
        raise NotFoundError(f"no template named {name!r}",
                            f"templates: {known}" if known else "your admin has not published any template")
    return template


def template_report(services: Services, principal: Principal, args: dict, source: str) -> dict:
    """Record that a template was restored: by whom, onto which host, how much."""
    _require(principal, USER)
    template = services.templates.get(args["template_id"])
    if template is None:
        raise NotFoundError("no such template")
    services.grants.end(template["id"], principal.user)
    _check_restore_report(args)
    failed = _failure(args)
    services.index.audit("template_restore_failed" if failed else "template_restore", principal.user, None,
                         source, template=template["id"], name=template["name"], archive=args["archive"][:64],
                         hostname=args["hostname"], files=args["files"], bytes=args["bytes"],
                         seconds=args["seconds"], result=args["result"], **failed)
    return {}


HANDLERS: dict[str, Handler] = {
    "whoami": whoami,
    "machine.enroll": enroll,
    "machines.list": machines,
    "archives.list": archives,
    "backup.report": backup_report,
    "agent.report": agent_report,
    "policy.get": policy_get,
    "restore.grant": restore_grant,
    "restore.report": restore_report,
    "restore.end": restore_end,
    "catalog.put": catalog_put,
    "catalog.get": catalog_get,
    "machine.adopt": adopt,
    "template.grant": template_grant,
    "templates.list": templates_list,
    "template.report": template_report,
}
