"""`homesync-server drill`: prove that backups restore. For each chosen machine, one at a
time: `borg check`, extract the newest archive into a scratch directory with the
escrowed passphrase, compare it with what the agent reported and with borg's own
hashes, measure recovery time (RTO) and the age of the newest archive (RPO), always
clean up, and record the result in the index and the audit log.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homesync import borg
from homesync.console import human_size
from homesync.errors import HomesyncError, NotFoundError
from homesync_server.actions import escrowed
from homesync_server.actions.drill_checks import compare_hashes, compare_tally, sample_files, scratch_tally
from homesync_server.actions.setup import admin_actor
from homesync_server.config import Layout
from homesync_server.index import event
from homesync_server.services import Services

logger = logging.getLogger(__name__)
DRILL_LOCK_WAIT = 300   # a running backup usually ends within minutes; wait for it
SPACE_MARGIN = 64 << 20  # free space wanted beyond the archive's size: 64 MiB or 5%
SPACE_SHARE = 0.05


@dataclass(frozen=True)
class Selection:
    """Which machines to drill: one, one user's, a sample of N, or every active one."""

    machine: str | None = None
    user: str | None = None
    sample: int | None = None
    all: bool = False


def drill(layout: Layout, selection: Selection, lock_wait: int = DRILL_LOCK_WAIT) -> list[dict[str, Any]]:
    """Drill the selected machines one at a time; return one record each (result
    'passed' or 'failed', with what failed and where). Raise NotFoundError if the
    selection names nothing."""
    services = Services.open(layout)
    try:
        machines = choose(services, selection)
        _clean_scratch(layout)
        return [drill_machine(services, m, lock_wait, admin_actor()) for m in machines]
    finally:
        services.close()


def choose(services: Services, selection: Selection) -> list[dict[str, Any]]:
    """Return the machines a selection names; a sample prefers machines drilled least
    recently (never first), so that a monthly sample covers the fleet in turn."""
    if selection.machine:
        machine = services.index.machine(selection.machine)
        if machine is None:
            raise NotFoundError(f"no machine {selection.machine}", "see `homesync-server machines`")
        return [machine]
    active = [m for m in services.index.machines(selection.user) if m["state"] == "active"]
    if selection.user and not active:
        raise NotFoundError(f"{selection.user} has no active machine")
    if selection.sample is None:
        return active
    last = {d["machine_id"]: d["started"] for d in services.index.drills(latest_only=True)}
    backed_up = [m for m in active if m["archives"]]
    random.shuffle(backed_up)
    return sorted(backed_up, key=lambda m: last.get(m["id"], 0.0))[:selection.sample]


def drill_machine(services: Services, machine: dict[str, Any], lock_wait: int, actor: str) -> dict[str, Any]:
    """Drill one machine; record and return the result (never raise for a drill failure)."""
    record = _new_record(machine)
    try:
        repo = escrowed.open_repository(services, machine["id"], "drill", actor, lock_wait)
        _run_steps(services, repo, record)
    except HomesyncError as e:
        _fail(record, e.line())
    except OSError as e:  # the scratch area or a repository file could not be used
        _fail(record, f"{e.filename or 'the data directory'}: {e.strerror}")
    record["finished"] = time.time()
    record["result"] = "failed" if record["failures"] else "passed"
    services.index.add_drill(_row(record), event(
        "drill", actor, machine["id"], result=record["result"], archive=record["archive"],
        failures=[f"{f['stage']}: {f['message']}" for f in record["failures"]]))
    logger.info("drill of %s: %s", machine["id"], record["result"])
    return record


def _new_record(machine: dict[str, Any]) -> dict[str, Any]:
    return {"machine_id": machine["id"], "name": machine["name"], "owner": machine["owner"],
            "started": time.time(), "finished": None, "result": "", "stage": "unseal", "failures": [],
            "archive": "", "archive_time": None, "rpo_seconds": None, "expected_from": "",
            "files": None, "bytes": None, "check_seconds": None, "extract_seconds": None,
            "throughput": None, "hashed_files": 0, "warnings": []}


def _fail(record: dict[str, Any], message: str) -> None:
    record["failures"].append({"stage": record["stage"], "message": message})


def _run_steps(services: Services, repo: escrowed.Repository, record: dict[str, Any]) -> None:
    """Check the repository, then restore and verify its newest archive; a check that
    finds problems is recorded and the restore still tried (it tells whether the newest
    backup is intact)."""
    record["stage"] = "check"
    _check(repo, record)
    record["stage"] = "list"
    archive = repo.newest_complete()
    if archive is None:
        raise NotFoundError(f"{repo.location} holds no complete archive")
    record.update(archive=archive.name, archive_time=archive.time, rpo_seconds=record["started"] - archive.time)
    expected = _expected(services, repo, archive.name, record)
    record["stage"] = "space"
    _require_space(services.layout, expected["original_size"])
    record["stage"] = "extract"
    _restore_and_verify(services.layout, repo, archive.name, expected, record)


def _check(repo: escrowed.Repository, record: dict[str, Any]) -> None:
    """Run `borg check`; record its errors as a failure (borg exits 1 when it finds any)."""
    errors: list[str] = []

    def on_event(e: dict) -> None:
        message = e.get("message", "")
        if e.get("levelname") in ("ERROR", "CRITICAL") and not message.startswith("Traceback"):
            errors.append(message.strip())
    started = time.monotonic()
    result = repo.run(borg.make_check_command(repo.location, repo.lock_wait), on_event=on_event)
    record["check_seconds"] = time.monotonic() - started
    if result.returncode != 0:
        shown = (errors[0] + (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else "")
                 if errors else f"rc {result.returncode}")
        _fail(record, f"borg check found problems in {repo.location}: {shown}")


def _expected(services: Services, repo: escrowed.Repository, archive: str, record: dict[str, Any]) -> dict:
    """Return the file count and size the agent reported for archive; without a report
    (it never reached the server), what borg recorded when it created the archive."""
    for row in services.index.archives(repo.machine_id):
        if row["name"] == archive and row["result"] in ("success", "warning"):
            record["expected_from"] = "agent report"
            return {"files": row["files"], "original_size": row["original_size"]}
    for info in repo.info():
        if info["name"] == archive:
            record["expected_from"] = "borg archive metadata (no agent report indexed)"
            return {"files": info["stats"]["nfiles"], "original_size": info["stats"]["original_size"]}
    raise NotFoundError(f"archive {archive} vanished from {repo.location} during the drill")


def _require_space(layout: Layout, size: int) -> None:
    """Raise HomesyncError unless the scratch directory has room for size plus a margin."""
    layout.scratch.mkdir(mode=0o700, exist_ok=True)
    need = size + max(SPACE_MARGIN, int(size * SPACE_SHARE))
    free = shutil.disk_usage(layout.scratch).free
    if free < need:
        raise HomesyncError(f"not enough free space in {layout.scratch} to restore: {human_size(need)} needed "
                            f"(the archive's {human_size(size)} and a margin), {human_size(free)} free",
                            "free some space or move the data directory's scratch area")


def _restore_and_verify(layout: Layout, repo: escrowed.Repository, archive: str, expected: dict,
                        record: dict[str, Any]) -> None:
    """Extract archive into a fresh scratch directory, time it, compare it with the
    expected figures and borg's hashes of a sample; always remove the directory."""
    target = Path(tempfile.mkdtemp(prefix=f"drill-{repo.machine_id}-", dir=layout.scratch))
    try:
        started = time.monotonic()
        extracted = repo.run(borg.make_extract_command(repo.location, archive, progress=False), cwd=str(target))
        seconds = time.monotonic() - started
        record["warnings"] = extracted.warnings[:20]
        record["stage"] = "verify"
        tally = scratch_tally(target)
        record.update(files=tally.files, bytes=tally.bytes, extract_seconds=seconds,
                      throughput=tally.bytes / seconds if seconds > 0 else None)
        for problem in compare_tally(tally, expected, f"{repo.location}::{archive}"):
            _fail(record, problem)
        _verify_sample(repo, archive, target, tally, record)
    finally:
        remove_tree(target)


def _verify_sample(repo: escrowed.Repository, archive: str, target: Path, tally, record: dict[str, Any]) -> None:
    """Hash a sample of the restored files and compare with what `borg list` says."""
    sample = sample_files(tally.paths)
    if not sample:
        return
    listed = repo.run(borg.make_list_hashes_command(repo.location, archive, sample, repo.lock_wait),
                      stdout_lines=True).json["lines"]
    hashed, problems = compare_hashes(target, sample, listed, f"{repo.location}::{archive}")
    record["hashed_files"] = hashed
    for problem in problems:
        _fail(record, problem)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("machine_id", "started", "finished", "archive", "result", "failures", "files", "bytes",
            "check_seconds", "extract_seconds", "throughput", "rpo_seconds", "hashed_files")
    return {k: record[k] for k in keys}


def _clean_scratch(layout: Layout) -> None:
    """Remove what an earlier drill that was killed left in the scratch directory."""
    if layout.scratch.is_dir():
        for leftover in layout.scratch.glob("drill-*"):
            remove_tree(leftover)


def remove_tree(root: Path) -> None:
    """Remove a restored tree, even one holding read-only directories."""
    if not root.exists():
        return
    top = os.fsencode(root)
    os.chmod(top, 0o700)
    for dirpath, dirnames, _ in os.walk(top):  # top-down: a directory is opened up before it is entered
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if not os.path.islink(child):
                os.chmod(child, 0o700)
    shutil.rmtree(top, ignore_errors=True)
    if root.exists():
        logger.warning("could not remove all of %s", root)
