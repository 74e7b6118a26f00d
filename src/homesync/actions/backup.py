"""`homesync backup`: one backup of the source to this machine's repository through
the shim, then its statistics reported to the server for the index."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Callable

from homesync import borg, config as agent_config, link, names
from homesync.config import AgentConfig, Paths
from homesync.errors import Cancelled, ConfigError, HomesyncError
from homesync.execute import Running

logger = logging.getLogger(__name__)


def backup(config: AgentConfig, paths: Paths, *, on_event: Callable[[dict], None] | None = None,
           on_start: Callable[[Running], None] | None = None, stopped: Callable[[], bool] | None = None) -> dict:
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
    argv = borg.make_create_command(access.location, name, config.exclusion_patterns(paths), agent_config.MARKERS)
    try:
        result = borg.run_borg(argv, access.environment(), paths.passphrase_file.read_bytes(),
                               cwd=str(config.source), on_event=on_event, on_start=on_start)
    except Cancelled as e:
        _report(config, paths, _failed_report(name, started, "interrupted", e.message))
        raise Cancelled("the backup was stopped; the next one continues from its checkpoint") from None
    except HomesyncError as e:
        if stopped is not None and stopped():
            _report(config, paths, _failed_report(name, started, "interrupted", e.message))
            raise Cancelled("the backup was stopped; the next one continues from its checkpoint") from None
        _report(config, paths, _failed_report(name, started, "failed", e.message))
        raise
    archive = result.json["archive"]
    stats = archive["stats"]
    report = {"name": name, "start": started, "end": time.time(), "files": stats["nfiles"],
              "original_size": stats["original_size"], "compressed_size": stats["compressed_size"],
              "deduplicated_size": stats["deduplicated_size"],
              "result": "warning" if result.returncode else "success"}
    if result.warnings:
        report["error"] = "; ".join(result.warnings)[:1000]
    reported = _report(config, paths, report)
    return dict(report, duration=report["end"] - started, warnings=result.warnings, indexed=reported)


def _failed_report(name: str, started: float, result: str, error: str) -> dict:
    return {"name": name, "start": started, "end": time.time(), "files": 0, "original_size": 0,
            "compressed_size": 0, "deduplicated_size": 0, "result": result, "error": error[:1000]}


def _report(config: AgentConfig, paths: Paths, report: dict) -> bool:
    """Send this report and any earlier unsent ones; keep what could not be sent for the
    next time. Return whether everything reached the server."""
    pending_file = paths.state_dir / "unreported.json"
    pending = _read_pending(pending_file) + [report]
    try:
        with link.machine_session(config, paths) as session:
            rpc = session.rpc()
            while pending:
                rpc.call("backup.report", **pending[0])
                pending.pop(0)
    except HomesyncError as e:
        logger.warning("could not report the backup to the server (will retry): %s", e.message)
    finally:
        agent_config.write_private(pending_file, json.dumps(pending).encode())
        agent_config.write_private(paths.last_backup, json.dumps(report).encode())
    return not pending


def _read_pending(path) -> list[dict]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
