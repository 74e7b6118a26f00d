"""`homesync-server doctor`: check a data directory the way an admin would before
calling for help (ownership, modes, keys, configuration, index, free space, borg) and
say, for each problem, what to run to fix it. It only reads."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from homesync import borg
from homesync.errors import HomesyncError, IndexDamagedError
from homesync_server import config as server_config, index_store
from homesync_server.config import Layout
from homesync_server.owner import owner_name

# Below both, a backup may fail for want of room (a full disk also blocks borg's lock).
MIN_FREE_BYTES = 256 << 20
MIN_FREE_SHARE = 0.02
SECRETS = ("host_key", "escrow.key", "users.json")
BORG_SERIES = (1, 4)
MAX_LISTED = 5


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ok, or the problem and what to do about it."""

    check: str
    ok: bool
    message: str
    fix: str = ""


def doctor(layout: Layout) -> list[Finding]:
    """Given a data directory, return one or more findings for each check, in order."""
    if not layout.data.is_dir():
        return [Finding("data directory", False, f"{layout.data} does not exist or is not a directory",
                        f"create it with `homesync-server init --data {layout.data}`")]
    owner = os.stat(layout.data).st_uid
    return [*_ownership(layout, owner), *_modes(layout, owner), *_keys(layout), _configuration(layout),
            _index(layout), _free_space(layout), _borg_version()]


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]


def _walk(root: Path):
    """Yield (path, lstat) for root and everything under it, not following links."""
    yield root, os.lstat(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            try:
                yield path, os.lstat(path)
            except FileNotFoundError:  # removed while we looked (a running server)
                continue


def _listed(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")


def _ownership(layout: Layout, owner: int) -> list[Finding]:
    """Every file must belong to the data directory's owner (the server's user)."""
    foreign: dict[int, list[Path]] = {}
    for path, st in _walk(layout.data):
        if st.st_uid != owner:
            foreign.setdefault(st.st_uid, []).append(path)
    name = owner_name(owner)
    if not foreign:
        return [Finding("ownership", True, f"everything in {layout.data} belongs to {name}")]
    return [Finding("ownership", False, f"{len(paths)} file(s) belong to {owner_name(uid)}"
                    f"{' (root-owned)' if uid == 0 else ''}, not {name}: {_listed(paths)}",
                    f"chown -R {name}: {layout.data}") for uid, paths in sorted(foreign.items())]


def _modes(layout: Layout, owner: int) -> list[Finding]:
    """The owner must read and write every file (and search every directory); the keys
    and the password file must be private to it."""
    closed, open_secrets = [], []
    for path, st in _walk(layout.data):
        if stat.S_ISLNK(st.st_mode):
            continue
        need = stat.S_IRWXU if stat.S_ISDIR(st.st_mode) else stat.S_IRUSR | stat.S_IWUSR
        if st.st_mode & need != need:
            closed.append(path)
        if path.parent == layout.data and path.name in SECRETS and st.st_mode & 0o077:
            open_secrets.append(path)
    findings = []
    if closed:
        findings.append(Finding("modes", False, f"{len(closed)} file(s) the server cannot read and write: "
                                f"{_listed(closed)}", f"chmod -R u+rwX {layout.data}"))
    if open_secrets:
        findings.append(Finding("modes", False, f"secret file(s) readable by others: {_listed(open_secrets)}",
                                "chmod 600 " + " ".join(str(p) for p in open_secrets)))
    return findings or [Finding("modes", True, "the server may read and write everything; the keys are private")]


def _keys(layout: Layout) -> list[Finding]:
    """The host key and the escrow key must be there and load."""
    from homesync_server.actions import setup
    from homesync_server.escrow import EscrowKey

    findings = []
    try:
        setup.host_key(layout)
        findings.append(Finding("host key", True, f"{layout.host_key} loads"))
    except HomesyncError:
        findings.append(Finding("host key", False, f"{layout.host_key} is missing or unreadable",
                                "restore it from a backup of the data directory: a new key changes the "
                                "fingerprint every enrolled computer checks"))
    try:
        EscrowKey.load(layout.escrow_key)
        findings.append(Finding("escrow key", True, f"{layout.escrow_key} loads"))
    except (HomesyncError, OSError, ValueError):
        findings.append(Finding("escrow key", False, f"{layout.escrow_key} is missing or unreadable",
                                "restore it from a backup of the data directory: without it no escrowed "
                                "passphrase opens (drills, prune and restores on new hardware stop)"))
    return findings


def _configuration(layout: Layout) -> Finding:
    try:
        server_config.load(layout)
    except HomesyncError as e:
        return Finding("configuration", False, e.message, e.hint or f"edit {layout.config_file}")
    return Finding("configuration", True, f"{layout.config_file} is valid")


def _index(layout: Layout) -> Finding:
    """The index must be there, open read-only and pass its engine's check (SQLite's
    quick check; PostgreSQL: it answers)."""
    try:
        if index_store.missing(layout):
            return Finding("index", False, f"{index_store.where(layout)} is missing", "run `homesync-server reindex`")
        return Finding("index", True, index_store.check(layout))
    except HomesyncError as e:
        return Finding("index", False, e.message, "stop the server, then run `homesync-server reindex --force`"
                       if isinstance(e, IndexDamagedError) else e.hint or "check [index] url in server.toml")


def _free_space(layout: Layout) -> Finding:
    usage = shutil.disk_usage(layout.data)
    free = f"{usage.free / (1 << 30):.2f} GiB free of {usage.total / (1 << 30):.2f} GiB"
    if usage.free < MIN_FREE_BYTES or usage.free < MIN_FREE_SHARE * usage.total:
        return Finding("free space", False, f"the disk of {layout.data} is (nearly) full: {free}",
                       "free space on it or grow it; prune (`homesync-server prune`) frees space only after compact")
    return Finding("free space", True, free)


def _borg_version() -> Finding:
    try:
        done = subprocess.run([borg.borg_executable(), "--version"], capture_output=True, text=True, timeout=60)
    except (HomesyncError, OSError, subprocess.TimeoutExpired) as e:
        return Finding("borg", False, f"borg cannot run: {e}", "install borgbackup 1.4 (the packages depend on it)")
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", done.stdout)
    if done.returncode != 0 or not match:
        return Finding("borg", False, f"borg --version failed: {(done.stderr or done.stdout).strip()[:200]}",
                       "reinstall borgbackup 1.4 and its libraries")
    if tuple(int(g) for g in match.groups()[:2]) != BORG_SERIES:
        return Finding("borg", False, f"borg {match.group(0)} is not 1.4", "install borgbackup 1.4")
    return Finding("borg", True, f"borg {match.group(0)}")
