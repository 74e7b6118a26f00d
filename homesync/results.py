"""What the actions hand back to the layers above them (the CLI, the agent, `setup`):
typed results instead of string-keyed dicts. Each says how it reads as JSON, the
form `--json` prints and a test reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from homesync.restore_plan import Preview


@dataclass
class BackupResult:
    """One backup that borg completed: the archive's figures as reported to the server,
    the warnings said with it, and whether the server recorded it (`indexed`: false
    when the report waits in the queue for the next contact)."""

    name: str
    start: float
    end: float
    files: int
    original_size: int
    compressed_size: int
    deduplicated_size: int
    result: str  # "success" or "warning" (borg exited 1)
    error: str = ""  # the warnings, joined, as the index keeps them
    warnings: list[str] = field(default_factory=list)
    indexed: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start

    def report(self) -> dict:
        """The `backup.report` the server is sent (the wire form, queued as JSON)."""
        figures = {k: v for k, v in asdict(self).items() if k not in ("warnings", "indexed", "error")}
        return dict(figures, error=self.error) if self.error else figures

    def as_json(self) -> dict:
        return dict(self.report(), duration=self.duration, warnings=list(self.warnings), indexed=self.indexed)


def _without_none(figures: dict, *optional: str) -> dict:
    """Return figures without the optional keys that hold None (JSON leaves them out)."""
    return {k: v for k, v in figures.items() if not (k in optional and v is None)}


@dataclass
class RestoreResult:
    """One restore, as it goes (the running totals a failed restore reports) and once
    done: what was merged into the target, what was kept aside, when the home became
    usable (settings and documents merged) and how long each part took (`timings`)."""

    machine: str
    machine_id: str
    archive: str
    target: str
    restored: int = 0
    bytes: int = 0
    skipped_identical: int = 0
    kept_aside: list[str] = field(default_factory=list)
    protected_skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    usable_seconds: float | None = None
    jobs: int = 1
    timings: dict = field(default_factory=lambda: {"parts": []})
    kept_dir: str | None = None
    seconds: float = 0.0
    template: str | None = None      # restored from a template home, not a machine
    adopted: str | None = None       # this computer became the restored machine (--adopt)
    enrolled_as: str | None = None   # this computer was enrolled as a new machine (--as-new)

    def as_json(self) -> dict:
        return _without_none(asdict(self), "template", "adopted", "enrolled_as")


@dataclass
class RestorePreview:
    """What a restore would do (`--dry-run`): nothing was written."""

    machine: str
    machine_id: str
    archive: str
    target: str
    plan: Preview  # what would be written, left, kept aside (restore_plan.preview)
    estimated_seconds: float
    throughput: float
    throughput_measured: bool
    warnings: list[str] = field(default_factory=list)
    template: str | None = None
    would_adopt: str | None = None
    would_enroll_as: str | None = None

    def as_json(self) -> dict:
        figures = {k: v for k, v in asdict(self).items() if k != "plan"}
        return _without_none(dict(figures, **asdict(self.plan), dry_run=True), "template", "would_adopt",
                             "would_enroll_as")
