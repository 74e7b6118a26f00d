"""`homesync backup`: one backup of the source to this machine's repository through
the shim, then its statistics reported to the server for the index."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import datetime, timezone
from typing import Callable

from homesync import borg, config as agent_config, link, names, protocol, state_files
from homesync.actions import history
from homesync.config import AgentConfig, Paths
from homesync.errors import (BorgCacheError, Cancelled, ConfigError, ConnectionFailedError, HomesyncError,
                             MachineRevokedError, ProtocolError, UsageError)
from homesync.execute import Running
from homesync.results import BackupResult

logger = logging.getLogger(__name__)
LIST_TIMEOUT = 60  # asking the repository what a stopped backup left must not hold up a stop for long


def backup(config: AgentConfig, paths: Paths, *, on_event: Callable[[dict], None] | None = None,
           on_start: Callable[[Running], None] | None = None, stopped: Callable[[], bool] | None = None) -> BackupResult:
    """Back up the source now; return the archive's summary. Raise HomesyncError if borg
    failed (the failure is still reported to the server when it can be), Cancelled if it
    was stopped (or failed after stopped() became true: borg exits with an error once it
    has written its checkpoint)."""
    if not config.source.is_dir():
        raise ConfigError(f"the backup source {config.source} is not a directory")
    # Our state directory exists before borg reads the home, so that creating it does not
    # change a backed-up directory's mtime (~/.local/state) after the fact.
    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.time()
    name = names.archive_name(datetime.fromtimestamp(started, timezone.utc))
    access = link.machine_repository(config, paths)
    argv = borg.make_create_command(access.location, name, config.exclusion_patterns(paths), agent_config.MARKERS,
                                    upload_ratelimit=max(int(config.upload_ratelimit), 1 if config.upload_ratelimit else 0),
                                    checkpoint_seconds=config.checkpoint_interval)
    def create() -> borg.BorgResult:
        return borg.run_borg(argv, access.environment(), paths.passphrase_file.read_bytes(),
                             cwd=str(config.source), on_event=on_event, on_start=on_start)
    try:
        result = _healing_cache(create, paths)
    except Cancelled as e:
        _interrupted(config, paths, access, name, started, e.message)
    except HomesyncError as e:
        if stopped is not None and stopped():
            _interrupted(config, paths, access, name, started, e.message)
        # a server that could not be reached (or stopped answering, or refused this computer) is not asked again now
        _report(config, paths, _failed_report(name, started, "failed", e.message),
                send=not isinstance(e, (ConnectionFailedError, MachineRevokedError)))
        raise
    result.warnings[:0] = state_files.take_notes()  # state files set aside: said with this backup
    archive = result.json["archive"]
    stats = archive["stats"]
    done = BackupResult(name=name, start=started, end=time.time(), files=stats["nfiles"],
                        original_size=stats["original_size"], compressed_size=stats["compressed_size"],
                        deduplicated_size=stats["deduplicated_size"],
                        result="warning" if result.returncode else "success",
                        error="; ".join(result.warnings)[:1000], warnings=result.warnings)
    done.indexed = _report(config, paths, done.report())
    history.start_keeping(paths, config.machine_id)  # the new archive into the file catalog, in the background
    return done


def _interrupted(config: AgentConfig, paths: Paths, access: link.RepositoryAccess, name: str, started: float,
                 error: str) -> None:
    """After a stopped borg create, ask the repository what it holds and raise Cancelled
    saying what is true: the archive was complete (the server indexes it; no failure is
    reported), a checkpoint was written, or neither (or the server could not say)."""
    found = _archives_named(access, paths, name)
    if found is not None and name in found:
        raise Cancelled(f"the backup was stopped after its archive {name} was complete "
                        "(the server indexes it)")
    _report(config, paths, _failed_report(name, started, "interrupted", error))
    if found is None:
        raise Cancelled("the backup was stopped; the next one continues from its checkpoint if borg wrote one")
    if any(n.startswith(f"{name}.checkpoint") for n in found):
        raise Cancelled("the backup was stopped; the next one continues from its checkpoint")
    raise Cancelled("the backup was stopped before its first checkpoint; the next one starts again")


def _archives_named(access: link.RepositoryAccess, paths: Paths, name: str) -> set[str] | None:
    """Return the names of the repository's archives that start with name (the archive
    and its checkpoints), or None if the repository could not be asked."""
    try:
        listing = borg.run_borg(borg.make_list_archives_command(access.location, f"{name}*", checkpoints=True),
                                access.environment(), paths.passphrase_file.read_bytes(), timeout=LIST_TIMEOUT)
    except (HomesyncError, OSError) as e:
        logger.info("could not ask the repository what the stopped backup left: %s", getattr(e, "message", e))
        return None
    return {a["name"] for a in (listing.json or {}).get("archives", [])}


def _healing_cache(create: Callable[[], borg.BorgResult], paths: Paths) -> borg.BorgResult:
    """Run create; if borg crashed in its local cache, set the cache aside, let borg
    rebuild it from the repository, and run create once more. The note is one warning."""
    try:
        return create()
    except BorgCacheError as e:
        aside = set_cache_aside(paths)
        note = f"the local borg cache was damaged ({e.message}); it was set aside in {aside} and rebuilt"
        logger.warning("%s", note)
    result = create()
    result.warnings.insert(0, note)
    return result


def set_cache_aside(paths: Paths) -> str:
    """Move borg's local cache out of the way (replacing an older damaged copy); return where."""
    aside = paths.cache_dir / "borg.damaged"
    shutil.rmtree(aside, ignore_errors=True)
    if paths.borg_cache.exists():
        paths.borg_cache.rename(aside)
    return str(aside)


def _failed_report(name: str, started: float, result: str, error: str) -> dict:
    return {"name": name, "start": started, "end": time.time(), "files": 0, "original_size": 0,
            "compressed_size": 0, "deduplicated_size": 0, "result": result, "error": error[:1000]}


def _report(config: AgentConfig, paths: Paths, report: dict, send: bool = True) -> bool:
    """Send this report and any earlier unsent ones (unless send is false); keep what
    could not be sent for the next time. Return whether everything reached the server."""
    pending_file = paths.state_dir / "unreported.json"
    pending = _read_pending(pending_file) + [report]
    try:
        if not send:
            return False
        with link.machine_session(config, paths) as session:
            rpc = session.rpc()
            while pending:
                try:
                    rpc.call("backup.report", **pending[0])
                except UsageError as e:  # a damaged entry must not hold up the ones behind it
                    _set_aside(pending_file, [pending[0]], f"the server refused it: {e.message}")
                pending.pop(0)
    except HomesyncError as e:
        logger.info("could not report the backup to the server (will retry): %s", e.message)
    finally:
        agent_config.write_private(pending_file, json.dumps(pending).encode())
        agent_config.write_private(paths.last_backup, json.dumps(report).encode())
    return not pending


def _read_pending(path) -> list[dict]:
    """Return the queued reports; a damaged queue is set aside (kept, logged), not lost."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        pending = json.loads(raw)
    except ValueError:
        pending = None
    if not isinstance(pending, list):
        _set_aside(path, raw, "it is not a list of reports")
        return []
    good = [r for r in pending if _is_report(r)]
    if len(good) < len(pending):
        _set_aside(path, [r for r in pending if not _is_report(r)], "entries that are not backup reports")
    return good


def _is_report(entry: object) -> bool:
    try:
        protocol.request("backup.report", entry)
    except ProtocolError:
        return False
    return True


def _set_aside(path, content, why: str) -> None:
    """Keep damaged queue content in <queue>.damaged (appending), and say so once in the log."""
    aside = path.with_name(path.name + ".damaged")
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    with open(aside, "ab", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
        f.write(data + b"\n")
    logger.warning("set aside part of the unreported-backup queue in %s: %s", aside, why)


def expected_size(config: AgentConfig, paths: Paths) -> int | None:
    """Return the bytes a backup is expected to read: the last successful backup's size,
    else (a first backup) the size of the source's files; None if neither can be told."""
    try:
        last = json.loads(paths.last_backup.read_text())
        if last.get("result") in ("success", "warning") and last.get("original_size"):
            return int(last["original_size"])
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    own = {str(p) for p in paths.own()}
    total = 0
    for directory, subdirs, files in os.walk(config.source):
        subdirs[:] = [d for d in subdirs if os.path.join(directory, d) not in own]
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total or None
