"""The extractions of a restore: each part `borg extract`ed into a staging directory of
its own inside the target and verified against the listing, up to `jobs` parts at a
time (borg's extract takes a shared lock), handed over in plan order for merging.
"""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from homesync import borg, execute, restore_plan
from homesync.errors import BorgError, Cancelled, DiskFullError, HomesyncError, RestoreError
from homesync.restore_plan import Phase

Progress = Callable[[float, str], None]
STAGING_PREFIX = ".homesync-restore-"
_UNMATCHED = re.compile(r"Include pattern '.*' never matched\.")
EARLY_NAMES = ("settings, documents", restore_plan.REST)  # the early extractions, until the plan names them


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
    caller takes each part's result in the same order. `early` extractions
    (restore_plan.early: borg paths and excludes that need no listing) start at once,
    before the listing that plans the parts is there; `start` keeps each one that
    restores exactly what the plan's next part restores, and stops the others. Closing
    stops what still runs and removes every staging directory not yet merged."""

    def __init__(self, archive: Archive, target: Path, jobs: int, progress: Progress | None = None,
                 early: Sequence[tuple[tuple[str, ...], tuple[str, ...]]] = ()) -> None:
        self.archive = archive
        self.target = target
        self.parts: list[Phase] = []
        self._expected: list[dict] = []
        self._read_only: list[list[str]] = []  # by part: what an ordinary user cannot set xattrs on once extracted
        self._progress = progress
        self._bar: _Bar | None = None
        self._running: dict[int, execute.Running] = {}  # by part number; early ones by -1, -2, …
        self._stagings: set[Path] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._planned = threading.Event()
        self._early = list(early)
        self._early_part: dict[int, int] = {}  # early extraction -> the part it is, once planned
        self._early_stopped: set[int] = set()
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="extract")
        self._early_futures = [self._pool.submit(self._extract_early, i) for i in range(len(self._early))]
        self._futures: list[Future] = []

    def start(self, items: list[dict], parts: list[Phase]) -> None:
        """Given the listing and the parts to extract in order, extract every part not
        running yet. Raise DiskFullError if an early part's files cannot fit."""
        self.parts = parts
        held = [[i for i in items if i["path"] == "." or p.holds(i["path"])] for p in parts]
        self._expected = [restore_plan.expected_tally(h) for h in held]
        self._read_only = [[i["path"] for i in h if i["path"] != "." and i["type"] in "-d" and i["mode"][2:3] != "w"]
                           for h in held]
        if self._progress is not None:
            self._bar = _Bar(self._progress, parts, [e["bytes"] or 0 for e in self._expected])
        with self._lock:
            for i, selection in enumerate(self._early):
                number = len(self._futures)
                if number < len(parts) and restore_plan.extracts_early(parts[number], selection, items):
                    self._early_part[i] = number
                    self._futures.append(self._early_futures[i])
                else:
                    self._early_stopped.add(i)
                    if -1 - i in self._running:
                        self._running[-1 - i].terminate()
        self._planned.set()
        for i in self._early_stopped:
            if self._early_futures[i].cancel():
                continue  # it had not started
            try:
                self._early_futures[i].result()
            except HomesyncError:
                pass  # stopped, or failed: the plan's own part says why, if it fails too
        for number in range(len(self._futures)):
            check_room(self.target, self._expected[number]["bytes"] or 0, self.archive.name, parts[number].name)
        self._futures += [self._pool.submit(self._extract, n) for n in range(len(self._futures), len(parts))]

    def take(self, number: int) -> Staged:
        """Wait for part `number` to be extracted and verified; return it, or raise why not."""
        return self._futures[number].result()

    def merged(self, staged: Staged) -> None:
        """Forget a staging directory the merge has emptied and removed."""
        self._remove_staging(staged.staging)

    def close(self) -> None:
        """Stop every extraction still running or waiting; remove their staging directories."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for future in self._early_futures + self._futures:
            future.cancel()
        for process in running:
            process.terminate()
        self._planned.set()
        self._pool.shutdown(wait=True)
        for staging in list(self._stagings):
            shutil.rmtree(staging, ignore_errors=True)

    def __enter__(self) -> "Extractions":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _extract_early(self, i: int) -> Staged:
        staging = self._new_staging()
        started = time.monotonic()
        paths, excludes = self._early[i]
        try:
            # borg warns of each path that selected nothing (a home with no Desktop): expected here
            warnings = self._run_borg(-1 - i, paths, excludes, (), staging)
            warnings = [w for w in warnings if not _UNMATCHED.fullmatch(w)]
            extracted = time.monotonic()
            self._planned.wait()
            if i not in self._early_part or self._stopping:
                raise Cancelled("an early extraction was stopped: the plan does not use it")
        except HomesyncError:
            if i in self._early_stopped:
                self._remove_staging(staging)
            raise
        return self._verified(self._early_part[i], staging, warnings, started, extracted)

    def _extract(self, number: int) -> Staged:
        part, expected = self.parts[number], self._expected[number]
        check_room(self.target, expected["bytes"] or 0, self.archive.name, part.name)
        staging = self._new_staging()
        started = time.monotonic()
        # names are literal (`pp:`): a top-level name such as "re:x" or "sh:*" is no pattern
        paths = part.paths if part.selection else [f"pp:{name}" for name in part.paths]
        warnings = self._run_borg(number, paths, [f"pp:{name}" for name in part.excludes], part.patterns, staging)
        return self._verified(number, staging, warnings, started, time.monotonic())

    def _new_staging(self) -> Path:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.target))
        with self._lock:
            self._stagings.add(staging)
        return staging

    def _remove_staging(self, staging: Path) -> None:
        with self._lock:
            self._stagings.discard(staging)
        shutil.rmtree(staging, ignore_errors=True)

    def _verified(self, number: int, staging: Path, warnings: list[str], started: float, extracted: float) -> Staged:
        """Return part `number` as Staged once its staging directory holds what the
        listing says it must; raise RestoreError if it does not."""
        part, expected = self.parts[number], self._expected[number]
        found = restore_plan.staged_tally(staging)
        if expected["bytes"] is None:
            found["bytes"] = None
        if expected != found:
            raise RestoreError(
                f"the restored files do not match archive {self.archive.name} ({part.name}): expected {expected}, "
                f"found {found}", "nothing of this part was merged; try again, and tell your admin if it persists")
        if self._bar is not None:  # an early part may have ended before the bar was there
            self._bar.update(number, 1.0)
        warnings = [described(w, self._read_only[number]) for w in warnings]
        return Staged(part, staging, warnings, extracted - started, time.monotonic() - extracted, expected)

    def _run_borg(self, number: int, paths: Sequence[str], excludes: Sequence[str], patterns: Sequence[str],
                  staging: Path) -> list[str]:
        # --progress costs borg a pass over the archive's items to size it: only for a bar
        argv = borg.make_extract_command(self.archive.location, self.archive.name, paths,
                                         progress=self._progress is not None, excludes=excludes, patterns=patterns)

        def started(process: execute.Running) -> None:
            with self._lock:
                self._running[number] = process
                stopping = self._stopping or -1 - number in self._early_stopped
            if stopping:
                process.terminate()

        def on_event(event: dict) -> None:
            part = number if number >= 0 else self._early_part.get(-1 - number)
            if self._bar is not None and part is not None:  # the bar comes with the plan
                self._bar.event(part, event)
        try:
            extracted = borg.run_borg(argv, self.archive.environment, self.archive.passphrase, cwd=str(staging),
                                      on_event=on_event if self._progress else None, on_start=started)
        except BorgError as e:
            if no_space([e.message]):
                raise target_full(self.target, self.archive.name, self._part_name(number), "") from None
            raise
        finally:
            with self._lock:
                self._running.pop(number, None)
        if no_space(extracted.warnings):
            raise target_full(self.target, self.archive.name, self._part_name(number), "")
        return extracted.warnings

    def _part_name(self, number: int) -> str:
        return self.parts[number].name if number >= 0 else EARLY_NAMES[-1 - number]


class _Bar:
    """One progress bar for parts extracted at once: the share of all their bytes done,
    named after the phases still being extracted."""

    def __init__(self, progress: Progress, parts: list[Phase], sizes: list[int]) -> None:
        self.progress = progress
        self.parts = parts
        self.sizes = [max(1, s) for s in sizes]
        self.done = [0.0] * len(parts)
        self.lock = threading.Lock()

    def event(self, number: int, event: dict) -> None:
        """Take one of borg's progress events of part `number`."""
        if event.get("type") != "progress_percent":
            return
        if event.get("total"):
            self.update(number, event.get("current", 0) / event["total"])
        elif event.get("finished"):
            self.update(number, 1.0)

    def update(self, number: int, fraction: float) -> None:
        """Set the share of part `number` done, and draw the bar."""
        with self.lock:
            self.done[number] = min(1.0, fraction)
            total = sum(d * s for d, s in zip(self.done, self.sizes)) / sum(self.sizes)
            busy = [p.name for p, d in zip(self.parts, self.done) if d < 1.0]
            self.progress(total, ", ".join(dict.fromkeys(busy)) or "done")


# borg 1.4 sets a restored file's xattrs through its descriptor, and names only that:
# "when setting extended attribute user.x: [Errno 13] Permission denied: '<FD 6>'"
_XATTR_BY_DESCRIPTOR = re.compile(r"when setting extended attribute (.*): (\[Errno (\d+)\] .*): '<FD \d+>'")


def described(warning: str, read_only: Sequence[str]) -> str:
    """Return borg's warning about a file it named only by a descriptor in words, naming
    the file where the listing tells which: borg makes a file read-only before it sets
    its xattrs, which an ordinary user then may not (EACCES), so such a file is one of
    the part's read-only ones (read_only: their paths)."""
    found = _XATTR_BY_DESCRIPTOR.fullmatch(warning)
    if not found:
        return warning
    name, why = found[1], found[2]
    if int(found[3]) != errno.EACCES or not read_only:
        return f"a restored file's extended attribute {name} could not be set: {why}"
    more = f" and {len(read_only) - 3} more" if len(read_only) > 3 else ""
    which = read_only[0] if len(read_only) == 1 else f"one of the read-only {', '.join(read_only[:3])}{more}"
    return f"{which}: extended attribute {name} could not be set, the file being read-only: {why}"


_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def no_space(messages: list[str]) -> bool:
    """Return whether borg's messages say the disk it wrote to is full."""
    return any(text in m for m in messages for text in _NO_SPACE)


def remove_stale(target: Path) -> None:
    """Remove the staging directories an earlier restore left in target, ending first
    any extraction of it still running there (its restore was killed, not stopped)."""
    for stale in target.glob(STAGING_PREFIX + "*"):
        execute.end_groups_inside(stale)
        shutil.rmtree(stale, ignore_errors=True)  # a partial extraction of ours, never local data


def check_room(target: Path, needed: int, archive: str, part: str) -> None:
    """Raise DiskFullError if the target's file system has less room than the part's files."""
    free = shutil.disk_usage(target).free
    if needed > free:
        raise target_full(target, archive, part, f": it needs {_size(needed)}, {_size(free)} are free")


def target_full(target: Path, archive: str, part: str, detail: str) -> DiskFullError:
    return DiskFullError(
        f"this computer's disk is full: the restore of archive {archive} into {target} stopped before "
        f"merging its part {part!r}{detail}",
        f"nothing local was changed; free space on the file system of {target}, then run the same restore "
        "again: it continues with that part")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
