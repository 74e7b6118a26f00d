"""What the agent remembers across restarts ($XDG_STATE_HOME/homesync/agent-state.json):
the outcome of its jobs and whether the user was already warned, so that a restart
neither forgets the schedule nor repeats a notification.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from homesync import state_files
from homesync.agent.policy import History
from homesync.config import Paths, write_private

log = logging.getLogger(__name__)

FILE_NAME = "agent-state.json"
SUCCESSFUL = ("success", "warning")


@dataclass
class Record:
    """The agent's memory; times are time.time() seconds.

    reference is when the agent first ran (protection is measured from there until a first
    success); last_size is the last archive's original size, for a progress estimate.
    """

    last_success: float | None = None
    last_attempt: float | None = None
    consecutive_failures: int = 0
    warned: bool = False
    reference: float = field(default_factory=time.time)
    last_size: int | None = None
    last_result: dict | None = None
    # The server refused this machine for good: {"machine_id", "line", "notified"}.
    revoked: dict | None = None

    def history(self) -> History:
        """Return the part the policy looks at."""
        return History(self.last_success, self.last_attempt, self.consecutive_failures,
                       (self.revoked or {}).get("line", ""))

    def forget_revocation_unless(self, machine_id: str) -> None:
        """Forget a revocation that was about another machine (this computer enrolled anew)."""
        if self.revoked and self.revoked.get("machine_id") != machine_id:
            self.revoked = None


def record_path(paths: Paths) -> Path:
    return paths.state_dir / FILE_NAME


def load(paths: Paths) -> Record:
    """Return the remembered record, newer by any backup run by hand since; a missing or
    damaged file gives a fresh record (a damaged one set aside and said), never an error."""
    raw = state_files.read(record_path(paths), _is_record)
    if raw is None:
        log.info("no usable %s: starting a fresh record", FILE_NAME)
        record = Record()
    else:
        known = {f.name for f in fields(Record)}
        record = Record(**{k: v for k, v in raw.items() if k in known})
    _merge_last_backup(record, paths)
    return record


def _is_record(raw: object) -> bool:
    """Return whether raw is a record as save() writes it (unknown keys allowed: a newer version's)."""
    if not isinstance(raw, dict):
        return False
    failures = raw.get("consecutive_failures", 0)
    return (all(state_files.number(raw.get(k), optional=True) for k in ("last_success", "last_attempt", "last_size"))
            and state_files.number(raw.get("reference", 0.0))
            and isinstance(failures, int) and not isinstance(failures, bool) and failures >= 0
            and isinstance(raw.get("warned", False), bool)
            and all(isinstance(raw.get(k), (dict, type(None))) for k in ("last_result", "revoked"))
            and isinstance((raw.get("revoked") or {}).get("line", ""), str))


def save(record: Record, paths: Paths) -> None:
    """Write the record atomically (a crash leaves the old or the new one, never half)."""
    write_private(record_path(paths), json.dumps(asdict(record), sort_keys=True).encode())


def read_last_backup(paths: Paths) -> dict | None:
    """Return the report of the last backup attempt (agent or `homesync backup`), or None
    (none yet, or the file was damaged: then it is set aside and said)."""
    return state_files.read(paths.last_backup, _is_report)


def _is_report(raw: object) -> bool:
    return (isinstance(raw, dict) and state_files.number(raw.get("end")) and isinstance(raw.get("result"), str)
            and isinstance(raw.get("error", ""), str) and state_files.number(raw.get("original_size"), optional=True))


def _merge_last_backup(record: Record, paths: Paths) -> None:
    """Take in a successful `homesync backup` run by hand while the agent was not looking."""
    report = read_last_backup(paths)
    if not report or report.get("result") not in SUCCESSFUL:
        return
    end = report.get("end")
    if isinstance(end, (int, float)) and (record.last_success is None or end > record.last_success):
        record.last_success = float(end)
        record.last_attempt = max(record.last_attempt or 0.0, float(end))
        record.consecutive_failures = 0
        record.last_size = report.get("original_size", record.last_size)
