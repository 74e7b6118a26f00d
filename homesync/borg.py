"""The one module that runs borg (1.4, through its CLI). Each borg command has a pure
`make_*_command` returning argv and is run through `run_borg`, which hands the
passphrase over a pipe, reads --log-json progress and maps exit codes to errors.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from homesync import execute
from homesync.errors import (ArchiveMissingError, BorgCacheError, BorgError, Cancelled, ConnectionFailedError,
                             HomesyncError, RepositoryLockedError, from_wire)

logger = logging.getLogger(__name__)
ENCRYPTION = "repokey"  # AES-CTR + HMAC-SHA256: 18% faster than -blake2 on SHA-NI CPUs (docs/architecture.md)
COMPRESSION = "lz4"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LOCK_WAIT = 30
CHECKPOINT_SECONDS = 300
_LOCK_CODES = {70, 71, 72, 73}
_WRONG_PASSPHRASE = 52
_CONNECTION_LOST = {80, 81, 87}  # borg's ConnectionClosed(WithHint), ConnectionBrokenWithHint
_AFTER_LOST = {"create": "nothing was lost; the next backup continues from where this one stopped",
               "extract": "nothing half-restored was merged; run the same restore again once the server answers: "
                          "it goes on from the phase it stopped in",
               "": "nothing was changed; try again once the server answers"}


def borg_executable() -> str:
    """Return the borg to run: the one installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "borg"
    if beside.exists():
        return str(beside)
    found = shutil.which("borg")
    if not found:
        raise BorgError("borg is not installed", "run `make setup` or install borgbackup 1.4")
    return found


def make_init_command(repo: str, encryption: str = ENCRYPTION) -> tuple[str, ...]:
    """Given a repository location, return argv that creates it, encrypted."""
    return (borg_executable(), "init", "--log-json", "--encryption", encryption, "--make-parent-dirs", repo)


def make_create_command(
    repo: str, archive: str, excludes: Sequence[str], markers: Sequence[str] = (".nobackup",),
    progress: bool = True, upload_ratelimit: int = 0, checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> tuple[str, ...]:
    """Given a repository, an archive name and exclusion patterns, return argv that backs
    up the current directory; run it with cwd = the source, so archive paths are
    relative to it. upload_ratelimit: KiB/s (0: unlimited); checkpoint_seconds: how often
    borg commits what it sent so far (an interrupted backup's next run goes on from there)."""
    argv = [borg_executable(), "create", "--json", "--log-json", "--lock-wait", str(LOCK_WAIT),
            "--compression", COMPRESSION, "--checkpoint-interval", str(max(1, round(checkpoint_seconds))),
            "--exclude-caches", "--one-file-system"]
    if progress:
        argv.append("--progress")
    if upload_ratelimit > 0:
        argv += ["--upload-ratelimit", str(upload_ratelimit)]
    for marker in markers:
        argv += ["--exclude-if-present", marker]
    for pattern in excludes:
        argv += ["--exclude", pattern]
    return (*argv, f"{repo}::{archive}", ".")


def make_extract_command(repo: str, archive: str, paths: Sequence[str] = (), progress: bool = True,
                         excludes: Sequence[str] = (), exclude_from: str = "",
                         bypass_lock: bool = False, patterns: Sequence[str] = ()) -> tuple[str, ...]:
    """Given a repository, an archive, optional paths inside it and exclusion patterns
    (and a file of them), return argv that extracts them into the current directory.
    bypass_lock: take no lock (for a confined extract that may not write the repository)."""
    # no --list: naming every item cost borg 1.8 CPU-s of 30,000 small files' 7 (bench/,
    # tmpfs), only to name the file of a warning that names it by descriptor (extraction.described)
    argv = [borg_executable(), "extract", "--log-json"]
    argv += ["--bypass-lock"] if bypass_lock else ["--lock-wait", str(LOCK_WAIT)]
    if progress:
        argv.append("--progress")
    for pattern in excludes:
        argv += ["--exclude", pattern]
    if exclude_from:
        argv += ["--exclude-from", exclude_from]
    for pattern in patterns:
        argv += ["--pattern", pattern]
    return (*argv, f"{repo}::{archive}", *paths)


def make_list_archives_command(repo: str, glob: str = "", checkpoints: bool = False) -> tuple[str, ...]:
    """Return argv listing a repository's archives (those matching glob, if given, and
    checkpoint archives too if asked) as JSON."""
    selection = (("--glob-archives", glob) if glob else ()) + (("--consider-checkpoints",) if checkpoints else ())
    return (borg_executable(), "list", "--json", "--log-json", "--lock-wait", str(LOCK_WAIT), *selection, repo)


def make_list_files_command(repo: str, archive: str, lock_wait: int = LOCK_WAIT, paths: Sequence[str] = (),
                            patterns: Sequence[str] = (), format: str = "") -> tuple[str, ...]:
    """Return argv listing an archive's items (all, or those matching paths and
    patterns), one JSON object a line; format adds borg's format keys to each line."""
    argv = [borg_executable(), "list", "--json-lines", "--log-json", "--lock-wait", str(lock_wait)]
    if format:
        argv += ["--format", format]
    for pattern in patterns:
        argv += ["--pattern", pattern]
    return (*argv, f"{repo}::{archive}", *paths)


def make_list_hashes_command(repo: str, archive: str, paths: Sequence[str],
                             lock_wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Return argv listing the given paths of an archive with their SHA-256, one JSON
    object a line (borg reads and authenticates their chunks to hash them)."""
    return (borg_executable(), "list", "--json-lines", "--format", "{sha256}", "--log-json",
            "--lock-wait", str(lock_wait), f"{repo}::{archive}", *(f"pp:{p}" for p in paths))


def make_info_command(repo: str, lock_wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Return argv giving every archive's times and statistics as JSON."""
    return (borg_executable(), "info", "--json", "--log-json", "--lock-wait", str(lock_wait),
            "--glob-archives", "*", repo)


def make_archive_info_command(repo: str, archive: str, lock_wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Return argv giving one archive's times and statistics as JSON."""
    return (borg_executable(), "info", "--json", "--log-json", "--lock-wait", str(lock_wait), f"{repo}::{archive}")


def make_check_command(repo: str, lock_wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Return argv checking a repository's segments and its archives' metadata, read
    only (borg exits with 1 when it finds a problem)."""
    return (borg_executable(), "check", "--log-json", "--lock-wait", str(lock_wait), repo)


def make_delete_command(repo: str, archives: Sequence[str], lock_wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Given a repository and archive names, return argv deleting those archives in one
    transaction (compact frees their space)."""
    return (borg_executable(), "delete", "--log-json", "--lock-wait", str(lock_wait), "--", repo, *archives)


def make_compact_command(repo: str, lock_wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Return argv freeing the space that deleted archives left in a repository."""
    return (borg_executable(), "compact", "--log-json", "--lock-wait", str(lock_wait), repo)


def make_break_lock_command(repo: str) -> tuple[str, ...]:
    """Return argv removing a repository's lock (and its cache's lock), whoever holds it:
    for a lock whose holder is known to be dead (no passphrase needed)."""
    return (borg_executable(), "break-lock", "--log-json", repo)


def lock_holders(repository: Path) -> set[tuple[str, int, int]]:
    """Return who holds a local repository's lock as borg's lock files name them: each
    (host id, pid, thread) of lock.exclusive/HOST.PID-THREAD and of lock.roster's shared
    and exclusive lists; an empty set when it is not locked. A name borg would not have
    written counts as a holder of host "?" (never taken for a dead one's)."""
    holders: set[tuple[str, int, int]] = set()
    try:
        names = os.listdir(repository / "lock.exclusive")
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        host_pid, _, thread = name.rpartition("-")
        host, _, pid = host_pid.rpartition(".")
        try:
            holders.add((host, int(pid), int(thread, 16)))
        except ValueError:
            holders.add(("?", 0, 0))
    try:
        roster = json.loads((repository / "lock.roster").read_text())
    except (FileNotFoundError, ValueError):
        roster = {}
    for entries in (roster.values() if isinstance(roster, dict) else ()):
        for entry in entries if isinstance(entries, list) else ():
            try:
                host, pid, thread = entry
                holders.add((str(host), int(pid), int(thread)))
            except (TypeError, ValueError):
                holders.add(("?", 0, 0))
    return holders


def _borg_datetime(text: str) -> datetime:
    """Given a time as borg prints it (naive, and UTC because homesync runs borg with
    TZ=UTC), return it as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def borg_time(text: str) -> float:
    """Given a time as borg prints it (an archive's start or end), return epoch seconds."""
    return _borg_datetime(text).timestamp()


def listed_mtime_ns(item: dict) -> int:
    """Given an item of `borg list --json-lines`, return its mtime in nanoseconds
    (borg prints microseconds; a float of seconds would lose them)."""
    delta = _borg_datetime(item["mtime"]) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def make_serve_command(repo_path: Path, storage_quota: str = "") -> tuple[str, ...]:
    """Given the one repository a session may reach, return the `borg serve` argv the
    server runs for it: append-only, restricted to that repository, whatever the
    client asked for."""
    argv = [borg_executable(), "serve", "--restrict-to-repository", str(repo_path), "--append-only"]
    if storage_quota:
        argv += ["--storage-quota", storage_quota]
    return tuple(argv)


@dataclass
class BorgEnvironment:
    """Where borg keeps its own files, and how it reaches a remote repository."""

    base_dir: Path | None = None          # BORG_BASE_DIR (server side)
    cache_dir: Path | None = None
    config_dir: Path | None = None
    rsh: str = ""                         # BORG_RSH: homesync's SSH shim
    extra: dict[str, str] = field(default_factory=dict)

    def build(self) -> dict[str, str]:
        """Return a fresh environment for one borg call (no inherited BORG_* or secrets)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BORG_", "HOMESYNC_"))}
        env.update(BORG_EXIT_CODES="modern", BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
                   BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="no", BORG_HOSTNAME_IS_UNIQUE="yes",
                   BORG_DISPLAY_PASSPHRASE="no", BORG_CHECK_I_KNOW_WHAT_I_AM_DOING="NO",
                   BORG_DELETE_I_KNOW_WHAT_I_AM_DOING="NO", LANG=env.get("LANG", "C.UTF-8"),
                   TZ="UTC")  # borg prints naive local times: make them UTC
        for name, value in (("BORG_BASE_DIR", self.base_dir), ("BORG_CACHE_DIR", self.cache_dir),
                            ("BORG_CONFIG_DIR", self.config_dir)):
            if value:
                env[name] = str(value)
        if self.config_dir:
            env["BORG_SECURITY_DIR"] = str(Path(self.config_dir) / "security")
            env["BORG_KEYS_DIR"] = str(Path(self.config_dir) / "keys")
        if self.rsh:
            env["BORG_RSH"] = self.rsh
        env.update(self.extra)
        return env


@dataclass
class BorgResult:
    """A finished borg call: its exit code, its --json output, and its warnings."""

    returncode: int
    json: dict | None
    warnings: list[str]


def run_borg(
    argv: Sequence[str], environment: BorgEnvironment, passphrase: bytes | None = None, *,
    cwd: str | None = None, on_event: Callable[[dict], None] | None = None,
    on_start: Callable[[execute.Running], None] | None = None, timeout: float | None = None,
    stdout_lines: bool = False,
) -> BorgResult:
    """Run borg; return its result when it succeeded (rc 0) or warned (rc 1, 100–127).
    Raise Cancelled if it was stopped by a signal, RepositoryLockedError, or BorgError
    (with borg's own last message) otherwise."""
    messages: list[dict] = []

    def on_line(line: str) -> None:
        event = _parse_event(line)
        if event.get("type") == "log_message":
            messages.append(event)
        if on_event:
            on_event(event)

    env = environment.build()
    with _shim_error_file(env) as shim_error:
        done = execute.run(argv, env=env, cwd=cwd, secret=passphrase,
                           secret_env="BORG_PASSPHRASE_FD", on_line=on_line, on_start=on_start, timeout=timeout)
        try:
            return _interpret(argv, done, messages, stdout_lines)
        except BorgError:
            _raise_shim_error(shim_error)  # the shim knows why the connection failed: say that
            if done.returncode in _CONNECTION_LOST:
                command = _command_name(argv)
                raise ConnectionFailedError(
                    f"the connection to the backup server broke during borg {command} "
                    "(it stopped or restarted, or the network went away)", _AFTER_LOST.get(command, _AFTER_LOST[""])
                ) from None
            raise


SHIM_ERROR_ENV = "HOMESYNC_SHIM_ERROR_FILE"


@contextmanager
def _shim_error_file(env: dict[str, str]) -> Iterator[Path | None]:
    """Give a borg call that goes through the shim a private file for the shim's error."""
    if not env.get("BORG_RSH"):
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="homesync-shim-", suffix=".json")  # 0600
    os.close(fd)
    env[SHIM_ERROR_ENV] = name
    try:
        yield Path(name)
    finally:
        os.unlink(name)


def tell_shim_error(error: HomesyncError) -> None:
    """In the shim: leave error (kind and line) for the borg call that started us."""
    name = os.environ.get(SHIM_ERROR_ENV)
    if name:
        with open(name, "w") as f:
            json.dump({"kind": error.kind, "message": error.line()}, f)


def _raise_shim_error(path: Path | None) -> None:
    """Raise the error the shim left, if it left one."""
    try:
        told = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        told = None
    if isinstance(told, dict) and told.get("message"):
        raise from_wire(str(told.get("kind")), str(told["message"])) from None


def _parse_event(line: str) -> dict:
    try:
        event = json.loads(line)
    except ValueError:
        return {"type": "log_message", "levelname": "INFO", "message": line}
    return event if isinstance(event, dict) else {"type": "log_message", "message": line}


def _interpret(argv: Sequence[str], done: execute.Completed, messages: list[dict], lines: bool) -> BorgResult:
    rc = done.returncode
    warnings = [m.get("message", "") for m in messages if m.get("levelname") == "WARNING"]
    if rc == 0 or rc == 1 or 100 <= rc <= 127:
        if lines:
            parsed = {"lines": [json.loads(x) for x in done.stdout.splitlines() if x.strip()]}
        else:
            parsed = json.loads(done.stdout) if done.stdout.strip() else None
        return BorgResult(rc, parsed, warnings)
    # borg logs the traceback of an error (e.g. an integrity error) after the error itself
    errors = [m.get("message", "") for m in messages if m.get("levelname") in ("ERROR", "CRITICAL")
              and not m.get("message", "").startswith("Traceback")]
    last = (errors or [m.get("message", "") for m in messages] or ["no output"])[-1].strip()
    last = last.splitlines()[-1] if last else "no output"
    command = _command_name(argv)
    if rc in _LOCK_CODES:
        raise RepositoryLockedError(f"borg {command}: repository is locked: {last}",
                                    "another backup or restore is running; try again later")
    if rc == _WRONG_PASSPHRASE:
        raise BorgError(f"borg {command}: the repository passphrase is wrong")
    if rc < 0 or rc >= 128:
        raise Cancelled(f"borg {command} was stopped by signal {abs(rc) if rc < 0 else rc - 128}")
    trace = _traceback(messages)
    if trace:
        logger.error("borg %s crashed (rc %s):\n%s", command, rc, trace)
    if any(m.get("msgid") == "Archive.DoesNotExist" for m in messages):
        raise ArchiveMissingError(f"borg {command}: {last}")
    if _CACHE_SOURCE in trace:
        raise BorgCacheError(f"borg {command} failed in its local cache (rc {rc}): {last}",
                             "the cache is rebuilt at the next backup")
    raise BorgError(f"borg {command} failed (rc {rc}): {last}")


_CACHE_SOURCE = f"{os.sep}borg{os.sep}cache.py"


def _traceback(messages: list[dict]) -> str:
    """Return the Python traceback borg logged when it crashed, or ""."""
    texts = [m.get("message", "") for m in messages]
    start = next((i for i, text in enumerate(texts) if "Traceback (most recent call last)" in text), None)
    return "" if start is None else "\n".join(texts[start:]).strip()


def _command_name(argv: Sequence[str]) -> str:
    """Return the borg command argv runs (e.g. "extract"), even behind a wrapper such
    as the server's sandbox."""
    after = next((i + 1 for i, word in enumerate(argv[:-1]) if os.path.basename(word) == "borg"), 1)
    return os.path.basename(argv[after]) if len(argv) > after else "borg"
