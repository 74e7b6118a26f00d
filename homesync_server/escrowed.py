"""The server's own borg runs on a machine's repository (drill, prune, reindex): the
repository opened with its escrowed passphrase, each release of which is audited,
and the archive listing read from borg itself, the source of truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from homesync import borg, execute
from homesync.errors import HomesyncError
from homesync_server import observed, stale_locks
from homesync_server.retention import Archive, is_checkpoint
from homesync_server.services import Services

TIMEOUT = 12 * 3600  # the longest any one borg call may take (a check of a large repository)


@dataclass
class Repository:
    """One machine's repository, open with its passphrase for the server's own borg runs."""

    services: Services
    machine_id: str
    passphrase: bytes
    lock_wait: int = borg.LOCK_WAIT
    on_start: Callable[[execute.Running], None] | None = None  # told of every borg this opens

    @property
    def location(self) -> str:
        return str(self.services.layout.repo(self.machine_id))

    def run(self, argv: tuple[str, ...], *, cwd: str | None = None, stdout_lines: bool = False,
            on_event: Callable[[dict], None] | None = None, secret: bool = True,
            environment: borg.BorgEnvironment | None = None,
            on_start: Callable[[execute.Running], None] | None = None) -> borg.BorgResult:
        """Run one borg command on this repository (in the server's borg environment
        unless another is given); raise HomesyncError as run_borg does. Interrupted here
        (Ctrl-C), stop borg and wait for it, so no lock outlives us."""
        started: list[execute.Running] = []

        def starting(running: execute.Running) -> None:
            started.append(running)
            for told in (on_start, self.on_start):
                if told:
                    told(running)
        try:
            return borg.run_borg(argv, environment or self.services.repos.environment(),
                                 self.passphrase if secret else None, cwd=cwd, stdout_lines=stdout_lines,
                                 on_event=on_event, timeout=TIMEOUT, on_start=starting)
        except HomesyncError:
            raise
        except BaseException:
            for running in started:  # borg runs in its own session: Ctrl-C did not reach it
                running.terminate()
                running.process.wait(timeout=60)
            raise

    def listing(self) -> list[dict[str, Any]]:
        """Return every archive in the repository as name, id and the time it claims."""
        listing = self.run(borg.make_list_archives_command(self.location)).json or {}
        return [{"name": a["name"], "id": a["id"], "time": borg.borg_time(a["start"])}
                for a in listing.get("archives", [])]

    def archives(self) -> list[Archive]:
        """Return every archive in the repository (checkpoints included), oldest first,
        each with the time it claims."""
        found = [Archive(a["name"], a["time"]) for a in self.listing()]
        return sorted(found, key=lambda a: (a.time, a.name))

    def trusted(self, now: float | None = None) -> observed.Trusted:
        """Return the repository's archives with the times the server observed (the
        index's), leaving out the flagged ones (observed.trusted)."""
        rows = {r["name"]: r for r in self.services.index.archive_observations(self.machine_id)}
        return observed.trusted(self.archives(), rows, time.time() if now is None else now)

    def newest_complete(self) -> Archive | None:
        """Return the newest archive that is not a checkpoint nor flagged (by observed time), or None."""
        complete = [a for a in self.trusted().archives if not is_checkpoint(a.name)]
        return complete[-1] if complete else None

    def info(self) -> list[dict[str, Any]]:
        """Return every archive's times and statistics as `borg info --json` gives them."""
        return (self.run(borg.make_info_command(self.location, self.lock_wait)).json or {}).get("archives", [])


def open_repository(services: Services, machine_id: str, purpose: str, actor: str,
                    lock_wait: int = borg.LOCK_WAIT) -> Repository:
    """Unseal a machine's escrowed passphrase for one of the server's own jobs and audit
    the release (passphrase_release, to=purpose). Raise HomesyncError if it cannot be."""
    repository = unsealed(services, machine_id, lock_wait)
    services.index.audit("passphrase_release", actor, machine_id, to=purpose)
    return repository


def unsealed(services: Services, machine_id: str, lock_wait: int = borg.LOCK_WAIT,
             on_start: Callable[[execute.Running], None] | None = None) -> Repository:
    """Unseal a machine's escrowed passphrase for a job that audits its use itself (the
    post-session check: one `repository_check` event each); on_start is told of each
    borg it starts. Raise HomesyncError if it cannot be."""
    stale_locks.break_if_dead(services, services.layout.repo(machine_id), machine_id)
    try:
        passphrase = services.repos.passphrase(machine_id)
    except OSError as e:
        raise HomesyncError(f"cannot read the escrowed passphrase of {machine_id}: {e.strerror}") from None
    return Repository(services, machine_id, passphrase, lock_wait, on_start)
