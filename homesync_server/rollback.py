"""A repository's own files, read and rolled back by the server: the repository key in
`config`, the newest committed transaction, and borg's manual append-only rollback
(segments after a good transaction moved aside with the newer index, hints and
integrity files, the good key put back), done while holding borg's own lock.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from homesync.errors import HomesyncError, RepositoryLockedError

logger = logging.getLogger(__name__)
AUXILIARY = ("index.", "hints.", "integrity.")
# borg parses the lock's file name as HOST.PID-THREAD; another host's lock is never
# taken for stale, so borg waits for it.
LOCK_NAME = f"homesync-server-rollback.{os.getpid()}-0"


def repository_key(repo: Path) -> str:
    """Return the repository key stored in the repository's config ('' if none), with
    its whitespace removed; raise HomesyncError if the config is unreadable."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(repo / "config") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as e:
        raise HomesyncError(f"cannot read {repo / 'config'}: {e}") from None
    return "".join(parser.get("repository", "key", fallback="").split())


def transaction(repo: Path) -> int | None:
    """Return the newest transaction the repository's index was written for, or None."""
    numbers = [int(p.name[6:]) for p in repo.glob("index.*")
               if p.name[6:].isdigit() and p.stat().st_size > 0]
    return max(numbers, default=None)


@contextmanager
def locked(repo: Path, timeout: float) -> Iterator[None]:
    """Hold borg's exclusive lock on repo while the block runs (waiting up to timeout
    seconds for readers and writers to finish); raise RepositoryLockedError if it stays busy."""
    deadline = time.monotonic() + timeout
    target = repo / "lock.exclusive"
    while True:
        if _try_lock(repo, target):
            if not _roster_busy(repo):
                break
            _unlock(target)
        if time.monotonic() > deadline:
            raise RepositoryLockedError(f"{repo} stayed locked for {timeout:g} s; the rollback will be retried")
        time.sleep(0.2)
    try:
        yield
    finally:
        _unlock(target)


def _try_lock(repo: Path, target: Path) -> bool:
    temp = Path(tempfile.mkdtemp(".tmp", "lock.exclusive.", repo))
    (temp / LOCK_NAME).touch()
    try:
        os.replace(temp, target)
        return True
    except OSError:
        (temp / LOCK_NAME).unlink()
        temp.rmdir()
        return False


def _roster_busy(repo: Path) -> bool:
    try:
        roster = json.loads((repo / "lock.roster").read_text() or "{}")
    except FileNotFoundError:
        return False
    except ValueError:
        return True
    return bool(roster.get("shared") or roster.get("exclusive"))


def _unlock(target: Path) -> None:
    (target / LOCK_NAME).unlink(missing_ok=True)
    target.rmdir()


def roll_back(repo: Path, good: int, good_key: str, aside: Path) -> list[str]:
    """Roll repo back to transaction good: move every segment after it, and the index,
    hints and integrity files of later transactions, into aside; put good_key back into
    config if it was replaced. Return what was moved (relative paths). Hold the lock."""
    aside.mkdir(parents=True, mode=0o700, exist_ok=True)
    moved = []
    for segment in sorted((repo / "data").glob("*/*")):
        if segment.name.isdigit() and int(segment.name) > good:
            moved.append(_move(repo, segment, aside))
    for path in sorted(repo.iterdir()):
        number = path.name.split(".", 1)[-1]
        if path.name.startswith(AUXILIARY) and (not number.isdigit() or int(number) > good):
            moved.append(_move(repo, path, aside))
    if repository_key(repo) != good_key:
        shutil.copy2(repo / "config", aside / "config.replaced")
        _write_key(repo, good_key)
        moved.append("config (key)")
    return moved


def _move(repo: Path, path: Path, aside: Path) -> str:
    relative = path.relative_to(repo)
    (aside / relative).parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, aside / relative)
    return str(relative)


def _write_key(repo: Path, key: str) -> None:
    """Replace the key in repo's config (borg writes it wrapped; one line reads the same)."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(repo / "config") as f:
        parser.read_file(f)
    parser.set("repository", "key", key)
    temp = repo / "config.homesync-tmp"
    with open(temp, "w") as f:
        parser.write(f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(temp, os.stat(repo / "config").st_mode & 0o777)
    os.replace(temp, repo / "config")


def forget_client_state(borg_home: Path, repo: Path) -> None:
    """Remove the server's own borg cache and security records of repo: they remember
    the rewritten manifest, and borg would take the rollback for a replay attack."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(repo / "config") as f:
        parser.read_file(f)
    repo_id = parser.get("repository", "id", fallback="")
    if not repo_id:
        return
    for place in (borg_home / ".cache" / "borg" / repo_id, borg_home / ".config" / "borg" / "security" / repo_id):
        shutil.rmtree(place, ignore_errors=True)
