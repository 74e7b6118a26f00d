"""`homesync-server drill`: prove that backups restore. For each chosen machine, one at a
time: `borg check`, vet the newest archive's listing (a client wrote it: untrusted),
extract it into a scratch directory outside <data> inside a Landlock sandbox, within a
space budget taken from the archive itself, compare it with what the agent reported and
with borg's own hashes, measure RTO and RPO, always clean up, and record the result.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from homesync import borg
from homesync.console import human_size
from homesync.errors import HomesyncError, NotFoundError
from homesync_server import sandbox
from homesync_server import escrowed
from homesync_server.actions.drill_budget import ScratchWatch
from homesync_server.actions.drill_checks import compare_hashes, compare_tally, sample_files, scratch_tally
from homesync_server.actions.drill_safety import Vetting, summary, vet_listing
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.nodes import job_lease
from homesync_server.services import Services

logger = logging.getLogger(__name__)
DRILL_LOCK_WAIT = 300   # a running backup usually ends within minutes; wait for it
SPACE_MARGIN = 64 << 20  # free space wanted beyond the archive's size: 64 MiB or 5%
SPACE_SHARE = 0.05
EFBIG = "[Errno 27]"     # how borg words a write the sandbox's file size limit stopped


@dataclass(frozen=True)
class Failure:
    """What failed in a drill, and at which stage (unseal, check, list, safety, space,
    extract, verify)."""

    stage: str
    message: str

    def line(self) -> str:
        return f"{self.stage}: {self.message}"


@dataclass
class DrillRecord:
    """One machine's drill as it goes, then its result: passed, or failed with what
    failed where; the figures it measured (RPO, restore time, throughput) when it got
    that far."""

    machine_id: str
    name: str
    owner: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: str = ""  # "passed" or "failed", once finished
    stage: str = "unseal"
    failures: list[Failure] = field(default_factory=list)
    archive: str = ""
    archive_time: float | None = None
    rpo_seconds: float | None = None
    expected_from: str = ""
    files: int | None = None
    bytes: int | None = None
    check_seconds: float | None = None
    extract_seconds: float | None = None
    throughput: float | None = None
    hashed_files: int = 0
    warnings: list[str] = field(default_factory=list)
    never_backed_up: bool = False

    def fail(self, message: str) -> None:
        """Record a failure at the current stage (the drill goes on where it can)."""
        self.failures.append(Failure(self.stage, message))

    def as_dict(self) -> dict[str, Any]:
        """Return the record as `drill --json` prints it."""
        return asdict(self)

    def row(self) -> dict[str, Any]:
        """Return what the index keeps of it."""
        keys = ("machine_id", "started", "finished", "archive", "result", "files", "bytes",
                "check_seconds", "extract_seconds", "throughput", "rpo_seconds", "hashed_files")
        return {**{k: getattr(self, k) for k in keys}, "failures": [asdict(f) for f in self.failures]}


@dataclass(frozen=True)
class Selection:
    """Which machines to drill: one, one user's, a sample of N, or every active one."""

    machine: str | None = None
    user: str | None = None
    sample: int | None = None
    all: bool = False


def drill(layout: Layout, selection: Selection, lock_wait: int = DRILL_LOCK_WAIT) -> list[DrillRecord]:
    """Drill the selected machines one at a time; return one record each (result
    'passed' or 'failed', with what failed and where), one run at a time on the whole
    service (a lease in the index). Raise NotFoundError if the selection names nothing,
    JobRunningError if another node drills now."""
    with Services.open(layout) as services, job_lease(services, "drill", "drills are"):
        machines = choose(services, selection)
        _prepare_scratch(scratch_dir(services))
        _clean_scratch(scratch_dir(services))
        return [drill_machine(services, m, lock_wait, admin_actor()) for m in machines]


def scratch_dir(services: Services) -> Path:
    """Return where drills extract: [drill] scratch, else the layout's default."""
    return services.config.drill.scratch or services.layout.default_scratch


def _prepare_scratch(scratch: Path) -> None:
    """Create the scratch directory (0700); raise HomesyncError if it is not a directory
    of this user's alone (it lives in a shared place such as /var/tmp)."""
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(scratch)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise HomesyncError(f"{scratch} is not a directory of the server's user: refusing to drill there",
                            "remove it, or set [drill] scratch in server.toml")
    if st.st_mode & 0o077:
        os.chmod(scratch, 0o700)


def choose(services: Services, selection: Selection) -> list[dict[str, Any]]:
    """Return the machines a selection names; a sample prefers machines drilled least
    recently (never first), so that a monthly sample covers the fleet in turn, and always
    takes in the machines never backed up (a finding, which must not go unsaid)."""
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
    # A machine never backed up is a finding, not a skip: always in, outside the N.
    never = [m for m in active if not m["archives"]]
    return never + sorted(backed_up, key=lambda m: last.get(m["id"], 0.0))[:selection.sample]


def drill_machine(services: Services, machine: dict[str, Any], lock_wait: int, actor: str) -> DrillRecord:
    """Drill one machine; record and return the result (never raise for a drill failure)."""
    record = DrillRecord(machine["id"], machine["name"], machine["owner"])
    try:
        repo = escrowed.open_repository(services, machine["id"], "drill", actor, lock_wait)
        _run_steps(services, repo, record, actor)
    except HomesyncError as e:
        record.fail(e.line())
    except OSError as e:  # the scratch area or a repository file could not be used
        record.fail(f"{e.filename or 'the data directory'}: {e.strerror}")
    record.finished = time.time()
    record.result = "failed" if record.failures else "passed"
    services.index.add_drill(record.row(), event(
        "drill", actor, machine["id"], result=record.result, archive=record.archive,
        failures=[f.line() for f in record.failures], **({"never_backed_up": True} if record.never_backed_up else {})))
    if record.failures:
        first = record.failures[0]
        logger.warning("drill of %s: failed at %s: %s", machine["id"], first.stage, first.message)
    else:
        logger.info("drill of %s: passed", machine["id"])
    return record


def _run_steps(services: Services, repo: escrowed.Repository, record: DrillRecord, actor: str) -> None:
    """Check the repository, then vet, restore and verify its newest archive; a check
    that finds problems is recorded and the restore still tried (it tells whether the
    newest backup is intact), an archive that fails vetting is never extracted."""
    record.stage = "check"
    _check(repo, record)
    record.stage = "list"
    archive = repo.newest_complete()
    if archive is None and not repo.archives():
        record.never_backed_up = True
        raise NotFoundError(f"never backed up: {repo.location} holds no archive",
                            "see the machine's agent (`homesync status` on it) and its owner")
    if archive is None:
        raise NotFoundError(f"{repo.location} holds no complete archive (only checkpoints or flagged ones)")
    record.archive, record.archive_time, record.rpo_seconds = archive.name, archive.time, record.started - archive.time
    expected = _expected(services, repo, archive.name, record)
    record.stage = "safety"
    vetting = _vet(services, repo, archive.name, record, actor)
    record.stage = "space"
    scratch = scratch_dir(services)
    budget = _require_space(scratch, vetting.bytes, services.config.drill.max_bytes)
    record.stage = "extract"
    _restore_and_verify(scratch, repo, archive.name, expected, vetting, budget, record)


def _check(repo: escrowed.Repository, record: DrillRecord) -> None:
    """Run `borg check`; record its errors as a failure (borg exits 1 when it finds any)."""
    errors: list[str] = []

    def on_event(e: dict) -> None:
        message = e.get("message", "")
        if e.get("levelname") in ("ERROR", "CRITICAL") and not message.startswith("Traceback"):
            errors.append(message.strip())
    started = time.monotonic()
    result = repo.run(borg.make_check_command(repo.location, repo.lock_wait), on_event=on_event)
    record.check_seconds = time.monotonic() - started
    if result.returncode != 0:
        shown = (errors[0] + (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else "")
                 if errors else f"rc {result.returncode}")
        record.fail(f"borg check found problems in {repo.location}: {shown}")


def _expected(services: Services, repo: escrowed.Repository, archive: str, record: DrillRecord) -> dict:
    """Return the file count and size the agent reported for archive; without a report
    (it never reached the server), what borg recorded when it created the archive."""
    for row in services.index.archives(repo.machine_id):
        if row["name"] == archive and row["result"] in ("success", "warning"):
            record.expected_from = "agent report"
            return {"files": row["files"], "original_size": row["original_size"]}
    for info in repo.info():
        if info["name"] == archive:
            record.expected_from = "borg archive metadata (no agent report indexed)"
            return {"files": info["stats"]["nfiles"], "original_size": info["stats"]["original_size"]}
    raise NotFoundError(f"archive {archive} vanished from {repo.location} during the drill")


def _vet(services: Services, repo: escrowed.Repository, archive: str, record: DrillRecord,
         actor: str) -> Vetting:
    """Return the vetting of archive's listing; an archive that could write outside the
    scratch directory is an escape attempt: logged as an error, audited
    (drill_escape_attempt) and raised as HomesyncError. Refuse without a sandbox too."""
    if sandbox.abi_version() < 1:
        raise HomesyncError("this kernel has no Landlock: a drill does not extract a client's archive unconfined",
                            "run drills on Linux 5.13 or later with Landlock enabled (lsm=...,landlock)")
    where = f"{repo.location}::{archive}"
    listed = repo.run(borg.make_list_files_command(repo.location, archive, repo.lock_wait), stdout_lines=True)
    vetting = vet_listing(listed.json["lines"])
    if vetting.problems:
        logger.error("drill of %s: %s could write outside the scratch directory: %s", repo.machine_id, where,
                     summary(vetting.problems))
        services.index.audit("drill_escape_attempt", actor, repo.machine_id, archive=archive,
                             problems=vetting.problems[:20], count=len(vetting.problems))
        raise HomesyncError(f"{where} is refused, not extracted: {len(vetting.problems)} items could write "
                            f"outside the scratch directory: {summary(vetting.problems)}")
    if vetting.specials:
        record.warnings.append(f"{len(vetting.specials)} device nodes, FIFOs or sockets left out of the "
                               f"restore (first: {vetting.specials[0]!r})")
        logger.warning("drill of %s: %s", repo.machine_id, record.warnings[-1])
    return vetting


def _require_space(scratch: Path, size: int, max_bytes: int = 0) -> int:
    """Return the bytes a restore of size (what the archive lists) may take in scratch:
    size plus a margin, at most max_bytes (0: no cap). Raise HomesyncError if the file
    system has not that much free, or size is over max_bytes."""
    need = size + max(SPACE_MARGIN, int(size * SPACE_SHARE))
    if max_bytes and size > max_bytes:
        raise HomesyncError(f"the archive lists {human_size(size)} of files, more than a drill may restore "
                            f"([drill] max_bytes: {human_size(max_bytes)})", "raise [drill] max_bytes in server.toml")
    budget = min(need, max_bytes) if max_bytes else need
    free = shutil.disk_usage(scratch).free
    if free < budget:
        raise HomesyncError(f"not enough free space in {scratch} to restore: {human_size(budget)} needed "
                            f"(the archive lists {human_size(size)}, and a margin), {human_size(free)} free",
                            "free some space or set [drill] scratch in server.toml")
    return budget


def _restore_and_verify(scratch: Path, repo: escrowed.Repository, archive: str, expected: dict,
                        vetting: Vetting, budget: int, record: DrillRecord) -> None:
    """Extract archive into a fresh scratch directory, confined and within budget, time
    it, compare it with the expected figures and borg's hashes of a sample; always
    remove the directory."""
    work = Path(tempfile.mkdtemp(prefix=f"drill-{repo.machine_id}-", dir=scratch))
    try:
        target = work / "restore"
        started = time.monotonic()
        extracted = _extract(repo, archive, work, vetting, budget)
        seconds = time.monotonic() - started
        record.warnings += extracted.warnings[:20]
        record.stage = "verify"
        tally = scratch_tally(target)
        record.files, record.bytes, record.extract_seconds = tally.files, tally.bytes, seconds
        record.throughput = tally.bytes / seconds if seconds > 0 else None
        for problem in compare_tally(tally, expected, f"{repo.location}::{archive}"):
            record.fail(problem)
        _verify_sample(repo, archive, target, tally, record)
    finally:
        remove_tree(work)


def _extract(repo: escrowed.Repository, archive: str, work: Path, vetting: Vetting, budget: int) -> borg.BorgResult:
    """Extract archive into work/restore: borg in the sandbox, writing only there and in
    its own base directory work/borg, taking no lock (the lock is in the repository, and
    the check and listing before ran under it), specials left out, stopped past budget.
    Raise HomesyncError if it fails or goes past the budget."""
    target, home, excludes = work / "restore", work / "borg", work / "excludes"
    target.mkdir(mode=0o700)
    home.mkdir(mode=0o700)
    excludes.write_text("".join(f"pp:{path}\n" for path in vetting.specials if "\n" not in path))
    argv = sandbox.make_sandboxed_command(
        borg.make_extract_command(repo.location, archive, progress=False, exclude_from=str(excludes),
                                  bypass_lock=True), [str(target), str(home)], max_file_size=budget)
    watch = ScratchWatch(work, budget)
    try:
        extracted = repo.run(argv, cwd=str(target), environment=dataclasses.replace(repo.services.repos.environment(), base_dir=home),
                             on_start=watch.start)
    except HomesyncError:
        if not watch.tripped:
            raise
        extracted = None
    finally:
        watch.stop()
    if watch.tripped or any(EFBIG in w for w in extracted.warnings):
        raise HomesyncError(f"{repo.location}::{archive}: the restore was stopped at its budget of "
                            f"{human_size(budget)}: the archive holds more than the {human_size(vetting.bytes)} "
                            "its listing claims")
    return extracted


def _verify_sample(repo: escrowed.Repository, archive: str, target: Path, tally, record: DrillRecord) -> None:
    """Hash a sample of the restored files and compare with what `borg list` says."""
    sample = sample_files(tally.paths)
    if not sample:
        return
    listed = repo.run(borg.make_list_hashes_command(repo.location, archive, sample, repo.lock_wait),
                      stdout_lines=True).json["lines"]
    hashed, problems = compare_hashes(target, sample, listed, f"{repo.location}::{archive}")
    record.hashed_files = hashed
    for problem in problems:
        record.fail(problem)


def _clean_scratch(scratch: Path) -> None:
    """Remove what an earlier drill that was killed left in the scratch directory."""
    if scratch.is_dir():
        for leftover in scratch.glob("drill-*"):
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
