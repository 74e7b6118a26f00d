"""The extractions of a restore: each part `borg extract`ed into a staging directory of
its own inside the target and verified against the listing, up to `jobs` parts at a
time (borg's extract takes a shared lock), handed over in plan order for merging.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from homesync import borg, execute, restore_plan
from homesync.errors import BorgError, DiskFullError, RestoreError
from homesync.restore_plan import Phase

Progress = Callable[[float, str], None]
STAGING_PREFIX = ".homesync-restore-"


@dataclass(frozen=True)
class Archive:
    """The archive a restore reads, and how to reach it."""

    location: str
    name: str
    environment: borg.BorgEnvironment
    passphrase: bytes


@dataclass
class Staged:
    """One part extracted and verified, waiting in its staging directory to be merged."""

    part: Phase
    staging: Path
    warnings: list[str]
    extract_seconds: float
    verify_seconds: float
    expected: dict = field(default_factory=dict)


class Extractions:
    """Runs the extractions of a list of parts on up to `jobs` threads, in order; the
    caller takes each part's result in the same order. Closing stops what still runs
    and removes every staging directory not yet merged."""

    def __init__(self, archive: Archive, items: list[dict], target: Path, parts: list[Phase], jobs: int,
                 progress: Progress | None = None) -> None:
        self.archive = archive
        self.target = target
        self.parts = parts
        self._expected = [restore_plan.expected_tally([i for i in items if i["path"] == "." or p.holds(i["path"])])
                          for p in parts]
        self._progress = _Bar(progress, parts, [e["bytes"] or 0 for e in self._expected])
        self._running: dict[int, execute.Running] = {}
        self._stagings: set[Path] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="extract")
        self._futures: list[Future] = [self._pool.submit(self._extract, n) for n in range(len(parts))]

    def take(self, number: int) -> Staged:
        """Wait for part `number` to be extracted and verified; return it, or raise why not."""
        return self._futures[number].result()

    def merged(self, staged: Staged) -> None:
        """Forget a staging directory the merge has emptied and removed."""
        with self._lock:
            self._stagings.discard(staged.staging)
        shutil.rmtree(staged.staging, ignore_errors=True)

    def close(self) -> None:
        """Stop every extraction still running or waiting; remove their staging directories."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for future in self._futures:
            future.cancel()
        for process in running:
            process.terminate()
        self._pool.shutdown(wait=True)
        for staging in list(self._stagings):
            shutil.rmtree(staging, ignore_errors=True)

    def __enter__(self) -> "Extractions":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _extract(self, number: int) -> Staged:
        part, expected = self.parts[number], self._expected[number]
        check_room(self.target, expected["bytes"] or 0, self.archive.name, part)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.target))
        with self._lock:
            self._stagings.add(staging)
        started = time.monotonic()
        warnings = self._run_borg(number, part, staging)
        extracted = time.monotonic()
        found = restore_plan.staged_tally(staging)
        if expected["bytes"] is None:
            found["bytes"] = None
        if expected != found:
            raise RestoreError(
                f"the restored files do not match archive {self.archive.name} ({part.name}): expected {expected}, "
                f"found {found}", "nothing of this part was merged; try again, and tell your admin if it persists")
        return Staged(part, staging, warnings, extracted - started, time.monotonic() - extracted, expected)

    def _run_borg(self, number: int, part: Phase, staging: Path) -> list[str]:
        # --progress costs borg a pass over the archive's items to size it: only for a bar
        # names are literal (`pp:`): a top-level name such as "re:x" or "sh:*" is no pattern
        paths = part.paths if part.selection else [f"pp:{name}" for name in part.paths]
        argv = borg.make_extract_command(self.archive.location, self.archive.name, paths,
                                         progress=self._progress.progress is not None,
                                         excludes=[f"pp:{name}" for name in part.excludes], patterns=part.patterns)

        def started(process: execute.Running) -> None:
            with self._lock:
                self._running[number] = process
                stopping = self._stopping
            if stopping:
                process.terminate()
        try:
            extracted = borg.run_borg(argv, self.archive.environment, self.archive.passphrase, cwd=str(staging),
                                      on_event=self._progress.events(number), on_start=started)
        except BorgError as e:
            if no_space([e.message]):
                raise target_full(self.target, self.archive.name, part, "") from None
            raise
        finally:
            with self._lock:
                self._running.pop(number, None)
        if no_space(extracted.warnings):
            raise target_full(self.target, self.archive.name, part, "")
        return extracted.warnings


class _Bar:
    """One progress bar for parts extracted at once: the share of all their bytes done,
    named after the phases still being extracted."""

    def __init__(self, progress: Progress | None, parts: list[Phase], sizes: list[int]) -> None:
        self.progress = progress
        self.parts = parts
        self.sizes = [max(1, s) for s in sizes]
        self.done = [0.0] * len(parts)
        self.lock = threading.Lock()

    def events(self, number: int) -> Callable[[dict], None] | None:
        if self.progress is None:
            return None

        def on_event(event: dict) -> None:
            if event.get("type") != "progress_percent":
                return
            if event.get("total"):
                self._update(number, event.get("current", 0) / event["total"])
            elif event.get("finished"):
                self._update(number, 1.0)
        return on_event

    def _update(self, number: int, fraction: float) -> None:
        with self.lock:
            self.done[number] = min(1.0, fraction)
            total = sum(d * s for d, s in zip(self.done, self.sizes)) / sum(self.sizes)
            busy = [p.name for p, d in zip(self.parts, self.done) if d < 1.0]
            self.progress(total, ", ".join(dict.fromkeys(busy)) or "done")


_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def no_space(messages: list[str]) -> bool:
    """Return whether borg's messages say the disk it wrote to is full."""
    return any(text in m for m in messages for text in _NO_SPACE)


def check_room(target: Path, needed: int, archive: str, part: Phase) -> None:
    """Raise DiskFullError if the target's file system has less room than the part's files."""
    free = shutil.disk_usage(target).free
    if needed > free:
        raise target_full(target, archive, part, f": it needs {_size(needed)}, {_size(free)} are free")


def target_full(target: Path, archive: str, part: Phase, detail: str) -> DiskFullError:
    return DiskFullError(
        f"this computer's disk is full: the restore of archive {archive} into {target} stopped before "
        f"merging its part {part.name!r}{detail}",
        f"nothing local was changed; free space on the file system of {target}, then run the same restore "
        "again: it continues with that part")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
