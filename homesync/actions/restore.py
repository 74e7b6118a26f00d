"""`homesync restore`: bring a computer's home back from its backups, on this computer
or on replacement hardware, or start from a template home an admin published. Settings
come back first, then documents, then the rest; each part is extracted into a staging
directory inside the target (several at once where that pays), verified against the
archive's listing, and merged in that order without losing anything local. An
interrupted restore resumes with the first phase not yet merged.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from homesync import borg, extraction, link, merge, names, restore_plan, state_files, transport
from homesync import config as agent_config
from homesync.actions import enroll
from homesync.actions.listing import Login, enrolled_config, find_machine, is_this_machine
from homesync.config import Paths
from homesync.errors import (ArchiveMissingError, Cancelled, ConflictError, ConnectionFailedError, HomesyncError,
                             NotFoundError, RestoreError, UsageError)
from homesync.extraction import STAGING_PREFIX, Staged
from homesync.files import only_one
from homesync.restore_plan import Phase
from homesync.results import RestorePreview, RestoreResult

Progress = Callable[[float, str], None]
ASSUMED_THROUGHPUT = 40e6  # bytes/s when nothing was measured yet: a cautious figure (bench/)
LOCK_NAME = "restore.lock"  # in the state directory, beside restore-progress.json
MAX_JOBS = 4  # extractions at once: well below the server's sessions per login (8), beside the RPC session


@dataclass(frozen=True)
class Request:
    machine: str | None
    archive: str = "latest"
    target: Path = Path.home()
    paths: tuple[str, ...] = ()
    adopt: bool = False
    as_new: str | None = None
    dry_run: bool = False
    template: str | None = None
    beside: bool = False
    jobs: int | None = None  # extractions at once; None: one per core, at most MAX_JOBS


@dataclass
class Source:
    """A repository to restore from, the passphrase that opens it, the session that
    reports the restore, and the password login used (None: this machine's own key).
    For a template, `machine` names the template and `published` maps the archives the
    admin published to their ids: only those archives, with those ids, are restored."""

    access: link.RepositoryAccess
    passphrase: bytes
    machine: dict
    rpc: transport.RpcClient
    login: Login | None = None
    published: dict[str, str] | None = None


def restore(paths: Paths, request: Request, login: Callable[[], Login],
            progress: Progress | None = None) -> RestoreResult | RestorePreview:
    """Restore request.machine (or request.template) into request.target (or preview
    it); return what was done. Raise HomesyncError with one clear line if anything is
    wrong; nothing local is lost."""
    _check_template_request(request)
    jobs = extraction_jobs(request.jobs)
    target = _check_target(request.target, create=not request.dry_run)
    include = [inside_archive(p) for p in request.paths]
    if request.beside and not include:
        raise UsageError("--beside needs the --path of what to put beside the current one")
    config = enrolled_config(paths)
    _check_identity_request(request, config)
    opened = (_open_template(paths, request.template, login) if request.template
              else _open_source(paths, config, request.machine, login))
    with opened as source:
        started = time.monotonic()
        if request.as_new:
            _check_name_free(source, request.as_new)
        archive, indexed = _pick_archive(source, request.archive)
        try:
            return _restore_archive(paths, source, request, archive, indexed, target, include, jobs, progress, started)
        except ArchiveMissingError:
            if indexed is None:
                raise
            # the index names an archive the repository no longer holds: its own newest
            archive, _ = _pick_archive(source, request.archive, from_index=False)
            return _restore_archive(paths, source, request, archive, None, target, include, jobs, progress, started)


def _only_restore(paths: Paths) -> AbstractContextManager:
    """Hold the lock that lets one restore at a time write this user's restore progress
    and staging directories; raise ConflictError if another holds it."""
    return only_one(paths.state_dir / LOCK_NAME, ConflictError(
        "another homesync restore is running for this user",
        "wait for it to end, or stop it, then run this restore again"))


def _restore_archive(paths: Paths, source: Source, request: Request, archive: str, indexed: dict | None,
                     target: Path, include: list[str], jobs: int, progress: Progress | None,
                     started: float) -> RestoreResult | RestorePreview:
    """Restore (or preview) one archive; `indexed`: the server's index record it was
    picked from, if it was, and then an ArchiveMissingError from its listing, before
    anything is written, is left to the caller, unreported."""
    picked = time.monotonic()
    items = None
    if include or request.dry_run:  # a selection is checked, and a preview made, before anything is written
        items = _list_items(source, archive, include)
        _check_selected(include, items, archive)
    if request.dry_run:
        preview = _preview(paths, source, archive, items, target)
        preview.would_adopt = source.machine["name"] if request.adopt else None
        preview.would_enroll_as = request.as_new or None
        return preview
    result = RestoreResult(source.machine["name"], source.machine["id"], archive, str(target),
                           template=_template_name(source))
    result.timings.update(archives=round(picked - started, 3))
    listing = (lambda: items) if items is not None else (lambda: _list_items(source, archive, include))
    with _only_restore(paths):  # refused, it reports nothing: nothing was tried
        try:
            _restore_phases(paths, source, archive, listing, target, include, progress, result,
                            beside=request.beside, jobs=jobs, started=started,
                            size=indexed.get("original_size") if indexed else None)
            result.warnings[:0] = state_files.take_notes()  # a damaged progress file, set aside
        except (HomesyncError, OSError, KeyboardInterrupt) as e:
            if not (indexed is not None and isinstance(e, ArchiveMissingError) and not result.phases):
                _report_failure(source, archive, result, time.monotonic() - started, e)
            raise
    result.seconds = time.monotonic() - started
    _remember_throughput(paths, result)
    _report(source, archive, result)
    if request.adopt:
        result.adopted = _adopt(paths, source)
    if request.as_new:
        result.enrolled_as = _enroll_as_new(paths, source, request.as_new)
    return result


def extraction_jobs(wanted: int | None) -> int:
    """Return how many extractions may run at once: as asked, else one per core, at
    most MAX_JOBS (several pay only where borg, not the disk, is the limit)."""
    if wanted is not None:
        if not 1 <= wanted <= MAX_JOBS:
            raise UsageError(f"--jobs must be between 1 and {MAX_JOBS}")
        return wanted
    return max(1, min(MAX_JOBS, len(os.sched_getaffinity(0))))


def _check_template_request(request: Request) -> None:
    if request.template and (request.machine or request.adopt or request.as_new):
        raise UsageError("--template cannot be combined with --machine, --adopt or --as-new",
                         "restore the template, then enroll this computer with `homesync enroll`")


def _template_name(source: Source) -> str | None:
    """Return the template's name when source is a template home, else None."""
    return source.machine["name"] if source.published is not None else None


def _check_identity_request(request: Request, config) -> None:
    if request.adopt and request.as_new:
        raise UsageError("choose either --adopt or --as-new")
    if (request.adopt or request.as_new) and config is not None:
        raise ConflictError(f"this computer is already enrolled as {config.machine_name!r}",
                            "--adopt and --as-new are for computers that are not enrolled yet")
    if (request.adopt or request.as_new) and request.paths:
        raise UsageError("--adopt and --as-new need a full restore (no --path)")


def _check_name_free(source: Source, name: str) -> None:
    """Raise before anything is restored if the user already has a computer called name
    (or raise InvalidNameError for a name enrollment would refuse)."""
    key = names.machine_name_key(names.machine_name(name))
    taken = [m["name"] for m in source.rpc.call("machines.list") if names.machine_name_key(m["name"]) == key]
    if taken:
        raise ConflictError(f"you already have a computer named {taken[0]!r}",
                            "choose another name for --as-new")


def _check_target(target: Path, create: bool) -> Path:
    target = target.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise RestoreError(f"the target {target} is a file, not a directory", "choose a directory with --target")
    if not create:
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RestoreError(f"cannot create the target {target}: {e.strerror}") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise RestoreError(f"the target {target} is not writable by you")
    return target


def inside_archive(path: str) -> str:
    """Given a --path as typed, return it relative to the backed-up home; raise UsageError
    for paths that leave it."""
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            pure = pure.relative_to(Path.home())
        except ValueError:
            raise UsageError(f"--path {path!r} is outside the home directory",
                             "give paths relative to the home, e.g. Documents/report.odt") from None
    if ".." in pure.parts or str(pure) in (".", ""):
        raise UsageError(f"--path {path!r} is not a path inside the backup")
    return str(pure)


@contextmanager
def _open_source(paths: Paths, config, wanted: str, login: Callable[[], Login]) -> Iterator[Source]:
    if is_this_machine(config, wanted):
        with link.machine_session(config, paths) as session:
            yield this_machine(config, paths, session.rpc())
        return
    credentials = login()
    with link.user_session(credentials.server, credentials.fingerprint, credentials.user,
                           credentials.password) as session, \
            tempfile.TemporaryDirectory(prefix="homesync-restore-key-") as key_dir:
        rpc = session.rpc()
        yield granted_machine(paths, credentials, rpc, key_dir, find_machine(rpc.call("machines.list"), wanted))[0]


def this_machine(config, paths: Paths, rpc: transport.RpcClient) -> Source:
    """Return the Source of this computer's own repository, reached with its machine key."""
    return Source(link.machine_repository(config, paths), paths.passphrase_file.read_bytes(),
                  {"id": config.machine_id, "name": config.machine_name}, rpc)


def granted_machine(paths: Paths, credentials: Login, rpc: transport.RpcClient, key_dir: str,
                    machine: dict) -> tuple[Source, str]:
    """Have the server grant a one-off key (made in key_dir) to one of the logged-in
    user's machines; return its Source and the key's public line (restore.end ends it)."""
    key_file, public_key = one_off_key(key_dir)
    grant = rpc.call("restore.grant", machine_id=machine["id"], public_key=public_key)
    access = link.RepositoryAccess(credentials.server, credentials.fingerprint, machine["id"], key_file, paths)
    return Source(access, grant["passphrase"], machine, rpc, credentials), public_key


@contextmanager
def _open_template(paths: Paths, name: str, login: Callable[[], Login]) -> Iterator[Source]:
    """Open a template home's repository with a one-off key the server grants to any
    user who logs in with their password."""
    credentials = login()
    with link.user_session(credentials.server, credentials.fingerprint, credentials.user,
                           credentials.password) as session, \
            tempfile.TemporaryDirectory(prefix="homesync-restore-key-") as key_dir:
        rpc = session.rpc()
        key_file, public_key = one_off_key(key_dir)
        grant = rpc.call("template.grant", name=name, public_key=public_key)
        template = grant["template"]
        # the template's id takes a machine id's place in the borg location: ssh://<id>@…/./<id>
        access = link.RepositoryAccess(credentials.server, credentials.fingerprint, template["id"], key_file, paths)
        yield Source(access, grant["passphrase"], {"id": template["id"], "name": template["name"]}, rpc,
                     credentials, published=dict(template["archives"]))


def one_off_key(key_dir: str) -> tuple[Path, str]:
    """Generate a one-off restore key in key_dir; return its file and public key line."""
    key = transport.new_key()
    key_file = Path(key_dir) / "key"
    key.save(key_file)
    return key_file, transport.public_key_line(key.pkey)


def _pick_archive(source: Source, wanted: str, from_index: bool = True) -> tuple[str, dict | None]:
    """Return the archive to restore, and the server's index record of it if it came
    from there: the newest recovery point the index holds for a machine (as the server
    observed them: an archive it flagged for a false time never counts), which costs no
    borg run; else (None), for a named archive, a template or a machine the index holds
    no backup of, what the repository itself lists."""
    if from_index and wanted == "latest" and source.published is None:
        indexed = [r for r in source.rpc.call("archives.list", machine_id=source.machine["id"])
                   if r["result"] in ("success", "warning") and not r.get("flag")]
        if indexed:
            return indexed[-1]["name"], indexed[-1]
    return _listed_archive(source, wanted), None


def _listed_archive(source: Source, wanted: str) -> str:
    listing = borg.run_borg(borg.make_list_archives_command(source.access.location),
                            source.access.environment(), source.passphrase).json
    names = [a["name"] for a in sorted(listing["archives"], key=lambda a: a["start"])
             if not a["name"].endswith(".checkpoint")
             and (source.published is None or source.published.get(a["name"]) == a["id"])]
    if not names:
        raise NotFoundError(f"{source.machine['name']!r} has no complete backup yet")
    if wanted == "latest":
        return names[-1]
    if wanted not in names:
        raise NotFoundError(f"{source.machine['name']!r} has no archive {wanted!r}",
                            "see `homesync archives --machine NAME`")
    return wanted


def _list_items(source: Source, archive: str, include: list[str]) -> list[dict]:
    """Return the archive's listing: all of it, or the selected paths with everything
    below them and the folders above them."""
    selected = restore_plan.selection(include) if include else Phase("all")
    argv = borg.make_list_files_command(source.access.location, archive, paths=selected.paths,
                                        patterns=selected.patterns)
    return borg.run_borg(argv, source.access.environment(), source.passphrase, stdout_lines=True).json["lines"]


def _check_selected(include: list[str], items: list[dict], archive: str) -> None:
    """Raise NotFoundError, before anything is written, if a --path is not in the archive."""
    missing = restore_plan.missing(include, items)
    if missing:
        raise NotFoundError(f"archive {archive} holds no {missing[0]!r}",
                            "see `homesync find PATTERN` for where and when it was backed up")


def _preview(paths: Paths, source: Source, archive: str, items: list[dict], target: Path) -> RestorePreview:
    plan = restore_plan.preview(items, target, paths.own_inside(target))
    throughput, measured = _throughput(paths)
    return RestorePreview(source.machine["name"], source.machine["id"], archive, str(target), plan,
                          estimated_seconds=round(plan.new_bytes / throughput, 1), throughput=throughput,
                          throughput_measured=measured, warnings=state_files.take_notes(),
                          template=_template_name(source))


def _restore_phases(paths: Paths, source: Source, archive: str, listing: Callable[[], list[dict]], target: Path,
                    include: list[str], progress: Progress | None, totals: RestoreResult, beside: bool = False,
                    jobs: int = 1, started: float | None = None, size: int | None = None) -> None:
    """Extract, verify and merge every phase not yet done, adding up into totals. A full
    restore with nothing done yet starts extracting settings and documents (and, with
    up to two extractions, the rest, unless the archive's `size` in the index says it
    may be split) while `listing` (the archive's listing) runs."""
    started = time.monotonic() if started is None else started
    progress_file = paths.state_dir / "restore-progress.json"
    # homesync's own directories exist before anything is merged, so that writing progress
    # or an adopted identity later does not change the mtime of a restored parent
    # directory (~/.config, ~/.local/state).
    for own in paths.own():
        own.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = _resumable(progress_file, source.machine["id"], archive, target)
    extraction.remove_stale(target)
    kept_dir = target / f"homesync-kept-{time.strftime('%Y%m%d-%H%M%S')}"
    totals.resumed = sorted(done)
    reading = extraction.Archive(source.access.location, archive, source.access.environment(), source.passphrase)
    early = restore_plan.early(jobs, size) if not include and not done else []
    with extraction.Extractions(reading, target, jobs, progress, early) as extractions:
        listing_started = time.monotonic()
        items = listing()
        totals.timings["listing"] = round(time.monotonic() - listing_started, 3)
        phases = [restore_plan.selection(include)] if include else restore_plan.plan_phases(items)
        todo = restore_plan.joined([phase for phase in phases if phase.name not in done])
        parts = _parts(todo, items, jobs)
        left = Counter(piece.name for part in parts for piece in part.merges or [part])
        totals.jobs = min(jobs, len(parts)) or 1
        _note_usable(totals, left, include, started)
        extractions.start(items, parts)
        for number, part in enumerate(parts):
            waiting = time.monotonic()
            staged = extractions.take(number)
            totals.warnings += staged.warnings
            for piece, staging in _pieces(staged, target):
                merging = time.monotonic()
                merged = _merge_part(paths, source, items, target, kept_dir, piece, staging,
                                     whole=number == len(parts) - 1 and not include, beside=include if beside else [])
                _add_up(totals, merged, staged, piece, waited=merging - waiting, merged_in=time.monotonic() - merging)
                left[piece.name] -= 1
                if left[piece.name] == 0:
                    totals.phases.append(piece.name)
                    done.add(piece.name)
                    agent_config.write_private(progress_file, json.dumps(
                        {"machine_id": source.machine["id"], "archive": archive, "target": str(target),
                         "done": sorted(done)}).encode())
                    _note_usable(totals, left, include, started)
            extractions.merged(staged)
    root = next((i for i in items if i["path"] == "."), None)
    if root and not include:
        # borg 1.4 does not keep "."'s mtime on extract; take it from the listing (µs).
        os.utime(target, ns=(time.time_ns(), borg.listed_mtime_ns(root)), follow_symlinks=False)
    progress_file.unlink(missing_ok=True)
    totals.kept_dir = str(kept_dir) if totals.kept_aside else None


def _parts(todo: list[Phase], items: list[dict], jobs: int) -> list[Phase]:
    """Return the extractions of the phases to do, in order: settings and documents one
    extraction, and the rest split into up to `jobs` parts around it (the part after
    settings and documents on their extraction last, so that every extraction ends at
    about the same time). A rest started early (restore_plan.early) is kept where it
    stays one part; a rest heavy enough to split pays more than that early start."""
    parts: list[Phase] = []
    for phase in todo:
        parts += restore_plan.split(phase, items, jobs, busy=tuple(restore_plan.weight(p, items) for p in parts))
    return parts


def _note_usable(totals: RestoreResult, left: Counter, include: list[str], started: float) -> None:
    """Record when the home became usable: every phase before the rest merged (for a
    --path, everything)."""
    waiting_for = [name for name, n in left.items() if n and (include or name != restore_plan.REST)]
    if totals.usable_seconds is None and not waiting_for:
        totals.usable_seconds = round(time.monotonic() - started, 3)


def _pieces(staged: Staged, target: Path) -> Iterator[tuple[Phase, Path]]:
    """Yield the phases of one extracted part with the staging directory holding each,
    in merge order: a part that extracted several phases gives each but the last a
    staging directory of its own, its top-level names renamed into it."""
    *firsts, last = staged.part.merges or (staged.part,)
    for piece in firsts:
        own = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
        try:
            for name in piece.paths:
                if os.path.lexists(staged.staging / name):
                    os.rename(staged.staging / name, own / name)
            yield piece, own
        finally:
            shutil.rmtree(own, ignore_errors=True)  # emptied and removed by the merge, unless it failed
    yield last, staged.staging


def _add_up(totals: RestoreResult, merged: merge.MergeResult, staged: Staged, piece: Phase, waited: float,
            merged_in: float) -> None:
    totals.restored += merged.restored
    totals.bytes += merged.bytes_restored
    totals.skipped_identical += merged.skipped_identical
    totals.kept_aside += [os.fsdecode(p) for p in merged.kept_aside]
    totals.protected_skipped += [os.fsdecode(p) for p in merged.protected_skipped]
    totals.timings["parts"].append({
        "phase": piece.name, "extracted_with": staged.part.name, "bytes": staged.expected.get("bytes"),
        "extract": round(staged.extract_seconds, 3), "verify": round(staged.verify_seconds, 3),
        "waited": round(waited, 3), "merge": round(merged_in, 3)})


def _resumable(progress_file: Path, machine_id: str, archive: str, target: Path) -> set[str]:
    """Return the phases an interrupted restore of the same archive into the same
    target already merged."""
    state = state_files.read(progress_file, _is_progress)
    if state is None or (state["machine_id"], state["archive"], state["target"]) != (machine_id, archive, str(target)):
        return set()
    return set(state["done"])


def _is_progress(raw: object) -> bool:
    return (isinstance(raw, dict) and all(isinstance(raw.get(k), str) for k in ("machine_id", "archive", "target"))
            and isinstance(raw.get("done"), list) and all(isinstance(p, str) for p in raw["done"]))


def _merge_part(paths: Paths, source: Source, items: list[dict], target: Path, kept_dir: Path, part: Phase,
                staging: Path, whole: bool, beside: list[str] = ()) -> merge.MergeResult:
    """Merge one verified part from its staging directory (the `beside` paths under a
    new name next to the current ones); whole: the last part, which also restores the
    target's own mode and times."""
    for path in beside:
        _rename_beside(staging, target, path, items)
    return merge.merge_tree(staging, target, kept_dir, protected=paths.own(), restore_root_metadata=whole,
                            loosen_root=source.published is None,  # a template never opens a home
                            keep_local_folders=sorted(restore_plan.parents_of(_selected(part))))


def _selected(phase: Phase) -> list[str]:
    """Return the archive paths a selection phase restores (its `pp:` patterns)."""
    return [p.removeprefix("pp:") for p in phase.paths] if phase.selection else []


def _rename_beside(staging: Path, target: Path, path: str, items: list[dict]) -> None:
    """Rename an extracted path in staging to a name beside the current one that says
    when that version was modified, e.g. `report (2026-11-20 14:02).odt`; never a name
    the target already has."""
    item = next(i for i in items if i["path"] == restore_plan.as_listed(path))
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(borg.listed_mtime_ns(item) / 1e9))
    parent, name = os.path.split(os.fsencode(path))
    stem, dot, suffix = name.rpartition(b".") if name.rpartition(b".")[0] else (name, b"", b"")
    for n in range(1, 1000):
        label = stamp if n == 1 else f"{stamp}, {n}"
        new = stem + f" ({label})".encode() + dot + suffix
        if not os.path.lexists(os.path.join(os.fsencode(target), parent, new)):
            break
    else:
        raise RestoreError(f"no free name beside {path!r}", "restore it into an empty folder with --target")
    os.rename(os.path.join(os.fsencode(staging), parent, name), os.path.join(os.fsencode(staging), parent, new))


def _throughput(paths: Paths) -> tuple[float, bool]:
    """Return (bytes per second of the last restore here, whether it was measured)."""
    measured = state_files.read(paths.state_dir / "restore-throughput.json", _is_throughput)
    return (float(measured["bytes_per_second"]), True) if measured else (ASSUMED_THROUGHPUT, False)


def _is_throughput(raw: object) -> bool:
    return isinstance(raw, dict) and state_files.number(raw.get("bytes_per_second")) and raw["bytes_per_second"] > 0


def _remember_throughput(paths: Paths, result: RestoreResult) -> None:
    if result.bytes > 10e6 and result.seconds > 0:
        agent_config.write_private(paths.state_dir / "restore-throughput.json", json.dumps(
            {"bytes_per_second": result.bytes / result.seconds}).encode())


def _report(source: Source, archive: str, result: RestoreResult) -> None:
    try:
        _send_report(source, archive, result.restored, result.bytes, result.seconds, "success")
    except HomesyncError as e:
        result.warnings.append(f"the server could not record this restore: {e.message}")


def _report_failure(source: Source, archive: str, totals: RestoreResult, seconds: float, error: BaseException) -> None:
    """Tell the server that this restore failed or was interrupted, and why (its audit
    records it); not when the server itself is what failed, and never raise."""
    if isinstance(error, ConnectionFailedError):
        return
    interrupted = isinstance(error, (KeyboardInterrupt, Cancelled))
    try:
        _send_report(source, archive, totals.restored, totals.bytes, seconds,
                     "interrupted" if interrupted else "failed", error=_failure_line(error)[:500])
    except (HomesyncError, KeyboardInterrupt):
        pass


def _failure_line(error: BaseException) -> str:
    """Return the one line that says why a restore stopped."""
    if isinstance(error, HomesyncError):
        return error.line()
    if isinstance(error, OSError):
        return f"{error.filename or 'the target'}: {error.strerror or error}"
    return "interrupted"


def _send_report(source: Source, archive: str, files: int, size: int, seconds: float, result: str,
                 **error: str) -> None:
    op, about = (("restore.report", {"machine_id": source.machine["id"]}) if source.published is None
                 else ("template.report", {"template_id": source.machine["id"]}))
    source.rpc.call(op, **about, archive=archive, hostname=socket.gethostname(), files=files, bytes=size,
                    seconds=float(seconds), result=result, **error)


def _adopt(paths: Paths, source: Source) -> str:
    """Make this computer the restored machine: a new key replaces the old one on the
    server (which refuses the old one from now on); the backup chain continues."""
    key = transport.new_key()
    answer = source.rpc.call("machine.adopt", machine_id=source.machine["id"],
                             public_key=transport.public_key_line(key.pkey), hostname=socket.gethostname())
    login = source.login
    enroll.save_enrollment(paths, login.server, login.fingerprint, login.user,
                           {"machine_id": answer["machine_id"], "name": answer["name"]}, key, source.passphrase)
    return answer["name"]


def _enroll_as_new(paths: Paths, source: Source, name: str) -> str:
    """Enroll this computer as a new machine (a clone of the restored one)."""
    login = source.login
    return enroll.enroll(paths, login.server, login.user, name, login.fingerprint, login.password)["name"]
