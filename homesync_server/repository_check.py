"""The check after every agent session: the server opens the repository with the escrowed
passphrase and compares it with the index. The key unchanged and every archive it knows
still there: new archives are indexed with the time the server observed (flagged if they
claim another), and the transaction recorded as the last good one. History removed or
rewritten: the repository is rolled back to that transaction and the machine frozen.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from homesync import borg, execute
from homesync_server import escrowed, observed, rollback
from homesync_server.index import PRUNING, event
from homesync_server.retention import is_checkpoint
from homesync_server.services import Services

logger = logging.getLogger(__name__)
ACTOR = "server"
LOCK_WAIT = 60       # a session still writing ends with a check of its own
ROLLBACK_WAIT = 600  # borg's lock, for the rollback itself


def check_machine(services: Services, machine_id: str,
                  on_start: Callable[[execute.Running], None] | None = None) -> dict[str, Any]:
    """Check one machine's repository against the index; return what was found
    ('good' with the archives indexed, or 'rolled back' with why); on_start is told of
    each borg the check starts (to stop it). Raise HomesyncError if the check itself
    could not run (it stays pending)."""
    machine = services.index.machine(machine_id)
    if machine is None:
        return {"machine_id": machine_id, "result": "gone"}
    state = services.index.history(machine_id) or {}
    now = time.time()
    since = state.get("pending_since") or state.get("checked_at") or machine["enrolled"]
    until = state.get("pending_until") or now
    path = services.layout.repo(machine_id)
    transaction, key = rollback.transaction(path), rollback.repository_key(path)
    problems, missing, repo, listed = [], [], None, {}
    if state.get("key") and key != state["key"]:
        problems.append("the repository key was replaced (archives undecryptable, or a new passphrase)")
    else:
        repo = escrowed.unsealed(services, machine_id, LOCK_WAIT, on_start)
        listed = {a["name"]: a for a in repo.listing()}
        rows = {r["name"]: r for r in services.index.archive_observations(machine_id)}
        missing = sorted(n for n, r in rows.items() if r["archive_id"] not in ("", PRUNING) and not is_checkpoint(n)
                         and (n not in listed or listed[n]["id"] != r["archive_id"]))
        if missing:
            problems.append(f"{len(missing)} archive(s) the index knows were removed or replaced")
    if problems:
        return _roll_back(services, machine_id, state, problems, missing, transaction, until)
    found = _index_new(services, repo, listed, rows, since, until)
    services.index.record_good_check(machine_id, key, transaction, now, until)
    services.index.audit("repository_check", ACTOR, machine_id, result="good", transaction=transaction,
                         archives=len(listed), added=len(found["added"]), flagged=len(found["flagged"]))
    return {"machine_id": machine_id, "result": "good", "transaction": transaction, **found}


def _index_new(services: Services, repo: escrowed.Repository, listed: dict[str, dict], rows: dict[str, dict],
               since: float, until: float) -> dict[str, Any]:
    """Index the archives no check has seen: those the CLI never reported (or reported as
    interrupted or failed: the repository holds them complete) are added with borg's
    figures, reported ones get their archive id; a claim outside the session is flagged."""
    added, seen, flagged = [], [], {}
    infos = _Infos(repo, sum(1 for n in listed if not is_checkpoint(n) and _unreported(rows.get(n))))
    for name, archive in listed.items():
        row = rows.get(name)
        if is_checkpoint(name) or (row and row["archive_id"] not in ("", PRUNING)):
            continue
        # indexed before observed times (or by reindex), or a prune that failed to delete it: no claim to check
        legacy = row is not None and (row["observed"] is None or row["archive_id"] == PRUNING)
        problem = "" if legacy else observed.claim_problem(archive["time"], since, until)
        if problem:
            flagged[name] = problem
        if _unreported(row):
            added.append(_found_row(infos, archive, problem, since, until))
        else:
            seen.append({"name": name, "archive_id": archive["id"], "flag": problem})
    if added or seen:
        services.index.observe_archives(repo.machine_id, added, seen, event(
            "archives_observed", ACTOR, repo.machine_id, added=[a["name"] for a in added],
            flagged=sorted(flagged)) if added or flagged else None)
    for name, problem in flagged.items():
        logger.warning("archive %s of %s flagged: %s", name, repo.machine_id, problem)
    return {"added": [a["name"] for a in added], "flagged": flagged}


def _unreported(row: dict | None) -> bool:
    """Whether the index lacks a complete archive's figures: no row, or the agent's report of a failure."""
    return row is None or row["result"] not in ("success", "warning")


class _Infos:
    """`borg info` of the archives the CLI never reported: one call per archive when there
    are a few (the usual case: one), one call for the whole repository when there are more."""

    ONE_BY_ONE = 3

    def __init__(self, repo: escrowed.Repository, wanted: int) -> None:
        self.repo, self.wanted, self._all = repo, wanted, None

    def of(self, name: str) -> dict:
        if self.wanted <= self.ONE_BY_ONE:
            return self.repo.run(borg.make_archive_info_command(self.repo.location, name, self.repo.lock_wait)
                                 ).json["archives"][0]
        if self._all is None:
            self._all = {i["name"]: i for i in self.repo.info()}
        return self._all[name]


def _found_row(infos: _Infos, archive: dict, problem: str, since: float, until: float) -> dict:
    """Return the index row of an archive the CLI never reported: borg's own figures
    (none for a flagged one: it is never counted), the time the server observed."""
    row = {"name": archive["name"], "start": archive["time"], "end": archive["time"], "files": 0,
           "original_size": 0, "compressed_size": 0, "deduplicated_size": 0, "result": "success",
           "error": "", "archive_id": archive["id"], "flag": problem,
           "observed": until if problem else observed.bounded(archive["time"], since, until)}
    if not problem:
        info = infos.of(archive["name"])
        row.update(end=borg.borg_time(info["end"]), files=info["stats"]["nfiles"],
                   original_size=info["stats"]["original_size"],
                   compressed_size=info["stats"]["compressed_size"],
                   deduplicated_size=info["stats"]["deduplicated_size"])
    return row


def _roll_back(services: Services, machine_id: str, state: dict, problems: list[str], missing: list[str],
               transaction: int | None, until: float) -> dict[str, Any]:
    """Roll the repository back to the last good transaction, freeze the machine and
    audit it (history_rollback); without a good transaction on record, only freeze."""
    path, good = services.layout.repo(machine_id), state.get("transaction")
    moved, restored = [], False
    if good is not None and state.get("key"):
        aside = services.layout.data / "rollbacks" / f"{machine_id}-{time.strftime('%Y%m%d-%H%M%S')}"
        with rollback.locked(path, ROLLBACK_WAIT):
            moved = rollback.roll_back(path, good, state["key"], aside)
            rollback.forget_client_state(services.layout.borg_home, path)
        repo = escrowed.unsealed(services, machine_id, LOCK_WAIT)  # not stopped midway: it records the freeze
        names = {a["name"] for a in repo.listing()}
        restored = not set(missing) - names
        gone = [r["name"] for r in services.index.archive_observations(machine_id)
                if r["name"] not in names and not r["flag"] and r["result"] in ("success", "warning")]
    else:
        gone = []
    reason = "; ".join(problems)
    services.index.freeze_history(machine_id, reason, gone, time.time(), until, event(
        "history_rollback", ACTOR, machine_id, reason=reason, missing=missing, from_transaction=transaction,
        to_transaction=good, moved=len(moved), restored=restored, not_in_repository=gone))
    logger.error("history of %s was removed or rewritten (%s): %s; pruning frozen until `homesync-server "
                 "machine release --machine %s`", machine_id, reason,
                 f"rolled back to transaction {good} ({len(moved)} files moved aside)" if moved or good is not None
                 else "no good transaction on record, not rolled back", machine_id)
    return {"machine_id": machine_id, "result": "rolled back" if good is not None else "frozen",
            "reason": reason, "missing": missing, "restored": restored}


def baseline(services: Services, machine_id: str) -> None:
    """Record a new repository's key and transaction as the first good state."""
    path = services.layout.repo(machine_id)
    now = time.time()
    services.index.record_good_check(machine_id, rollback.repository_key(path), rollback.transaction(path), now, now)
