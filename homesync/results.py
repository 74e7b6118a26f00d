"""What the actions hand back to the layers above them (the CLI, the agent, `setup`):
typed results instead of string-keyed dicts. Each says how it reads as JSON, the
form `--json` prints and a test reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
