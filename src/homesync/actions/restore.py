"""`homesync restore`: bring a computer's home back from its backups, on this computer
or on replacement hardware. borg extracts into a staging directory inside the target,
the result is verified against the archive's listing, then merged into the target
without losing anything local.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from homesync import borg, link, merge, transport
from homesync import config as agent_config
from homesync.actions.listing import Login, enrolled_config, find_machine, is_this_machine
from homesync.config import Paths
from homesync.errors import (ConflictError, HomesyncError, NotFoundError, RestoreError, UsageError)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Request:
    machine: str
    archive: str = "latest"
    target: Path = Path.home()
    paths: tuple[str, ...] = ()
    adopt: bool = False


@dataclass
class Source:
    """A repository to restore from, the passphrase that opens it, and (for a password
    login) the session that may report the restore and adopt the machine."""

    access: link.RepositoryAccess
    passphrase: bytes
    machine: dict
    rpc: transport.RpcClient


def restore(paths: Paths, request: Request, login: Callable[[], Login], progress: Progress | None = None) -> dict:
    """Restore request.machine into request.target; return what was done. Raise
    HomesyncError with one clear line if anything is wrong; local files are never lost."""
    target = _check_target(request.target)
    include = [_inside_archive(p) for p in request.paths]
    config = enrolled_config(paths)
    if request.adopt and config is not None:
        raise ConflictError(f"this computer is already enrolled as {config.machine_name!r}",
                            "--adopt is for computers that are not enrolled yet")
    with ExitStack() as stack:
        source = stack.enter_context(_open_source(paths, config, request.machine, login))
        archive = _pick_archive(source, request.archive)
        started = time.monotonic()
        result = _extract_and_merge(paths, source, archive, target, include, progress)
        result["seconds"] = time.monotonic() - started
        _report(source, archive, result)
        if request.adopt:
            _adopt(paths, config, source, login)
            result["adopted"] = True
        return result


def _check_target(target: Path) -> Path:
    target = target.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise RestoreError(f"the target {target} is a file, not a directory", "choose a directory with --target")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RestoreError(f"cannot create the target {target}: {e.strerror}") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise RestoreError(f"the target {target} is not writable by you")
    return target


def _inside_archive(path: str) -> str:
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
            machine = {"id": config.machine_id, "name": config.machine_name}
            yield Source(link.machine_repository(config, paths), paths.passphrase_file.read_bytes(),
                         machine, session.rpc())
        return
    credentials = login()
    with link.user_session(credentials.server, credentials.fingerprint, credentials.user,
                           credentials.password) as session, \
            tempfile.TemporaryDirectory(prefix="homesync-restore-key-") as key_dir:
        rpc = session.rpc()
        machine = find_machine(rpc.call("machines.list"), wanted)
        one_off = transport.new_key()
        key_file = Path(key_dir) / "key"
        one_off.save(key_file)
        grant = rpc.call("restore.grant", machine_id=machine["id"],
                         public_key=transport.public_key_line(one_off.pkey))
        access = link.RepositoryAccess(credentials.server, credentials.fingerprint, machine["id"], key_file, paths)
        yield Source(access, grant["passphrase"], machine, rpc)


def _pick_archive(source: Source, wanted: str) -> str:
    listing = borg.run_borg(borg.make_list_archives_command(source.access.location),
                            source.access.environment(), source.passphrase).json
    names = [a["name"] for a in sorted(listing["archives"], key=lambda a: a["start"])
             if not a["name"].endswith(".checkpoint")]
    if not names:
        raise NotFoundError(f"{source.machine['name']!r} has no complete backup yet")
    if wanted == "latest":
        return names[-1]
    if wanted not in names:
        raise NotFoundError(f"{source.machine['name']!r} has no archive {wanted!r}",
                            "see `homesync archives --machine NAME`")
    return wanted


def _extract_and_merge(paths: Paths, source: Source, archive: str, target: Path, include: list[str],
                       progress: Progress | None) -> dict:
    staging = Path(tempfile.mkdtemp(prefix=".homesync-restore-", dir=target))
    try:
        env = source.access.environment()
        extracted = borg.run_borg(borg.make_extract_command(source.access.location, archive, include),
                                  env, source.passphrase, cwd=str(staging), on_event=_progress_events(progress))
        root = _verify(source, archive, include, staging)
        kept_dir = target / f"homesync-kept-{time.strftime('%Y%m%d-%H%M%S')}"
        # A full restore also gives the target the home's own mode and mtime.
        merged = merge.merge_tree(staging, target, kept_dir, protected=paths.own(),
                                  restore_root_metadata=not include)
        if root and not include:
            # borg 1.4 does not keep "."'s mtime on extract; take it from the listing (µs).
            os.utime(target, ns=(time.time_ns(), borg.listed_mtime_ns(root)), follow_symlinks=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"machine": source.machine["name"], "machine_id": source.machine["id"], "archive": archive,
            "target": str(target), "restored": merged.restored, "bytes": merged.bytes_restored,
            "skipped_identical": merged.skipped_identical,
            "kept_aside": [os.fsdecode(p) for p in merged.kept_aside],
            "kept_dir": str(kept_dir) if merged.kept_aside else None,
            "protected_skipped": [os.fsdecode(p) for p in merged.protected_skipped],
            "warnings": extracted.warnings}


def _progress_events(progress: Progress | None) -> Callable[[dict], None] | None:
    if progress is None:
        return None

    def on_event(event: dict) -> None:
        if event.get("type") == "progress_percent" and event.get("total"):
            progress(event.get("current", 0) / event["total"], event.get("info", [""])[-1] if event.get("info") else "")
        elif event.get("type") == "progress_percent" and event.get("finished"):
            progress(1.0, "")
    return on_event


def _verify(source: Source, archive: str, include: list[str], staging: Path) -> dict | None:
    """Compare what was extracted with the archive's own listing: the number of
    directories, files and symlinks, and the bytes of distinct files (hard links once).
    Return the listing's item for the backed-up directory itself, if any."""
    listing = borg.run_borg(borg.make_list_files_command(source.access.location, archive) + tuple(include),
                            source.access.environment(), source.passphrase, stdout_lines=True).json["lines"]
    expected, found = _expected_tally(listing), _staged_tally(staging)
    if expected["bytes"] is None:
        found["bytes"] = None
    if expected != found:
        raise RestoreError(f"the restored files do not match archive {archive}: expected {expected}, found {found}",
                           "nothing was merged into the target; try again, and tell your admin if it persists")
    return next((item for item in listing if item["path"] == "."), None)


def _expected_tally(items: list[dict]) -> dict:
    tally = {"d": 0, "-": 0, "l": 0, "other": 0, "bytes": 0}
    first_names = {i["path"] for i in items if i["type"] == "-" and not i.get("source")}
    unknown = False
    for item in items:
        if item["path"] == ".":
            continue
        kind = item["type"] if item["type"] in tally else "other"
        tally[kind] += 1
        if kind == "-" and not item.get("source"):
            tally["bytes"] += item["size"]
        elif kind == "-":
            # a further name of a hard-linked file: its bytes are counted once, with the first
            # name, unless that name was not extracted (then the size is unknown)
            unknown = unknown or item["source"] not in first_names
    if unknown:
        tally["bytes"] = None
    return tally


_KINDS = {stat.S_IFDIR: "d", stat.S_IFREG: "-", stat.S_IFLNK: "l"}


def _staged_tally(root: Path) -> dict:
    tally, inodes = {"d": 0, "-": 0, "l": 0, "other": 0, "bytes": 0}, set()
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
            tally[kind] += 1
            if kind == "-" and (st.st_dev, st.st_ino) not in inodes:
                inodes.add((st.st_dev, st.st_ino))
                tally["bytes"] += st.st_size
    return tally


def _report(source: Source, archive: str, result: dict) -> None:
    try:
        source.rpc.call("restore.report", machine_id=source.machine["id"], archive=archive,
                        hostname=socket.gethostname(), files=result["restored"], bytes=result["bytes"],
                        seconds=float(result["seconds"]), result="success")
    except HomesyncError as e:
        result["warning"] = f"the server could not record this restore: {e.message}"


def _adopt(paths: Paths, config, source: Source, login: Callable[[], Login]) -> None:
    raise UsageError("--adopt is not available yet", "restore without it, then `homesync enroll` this computer")
