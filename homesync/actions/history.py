"""`homesync find` and `homesync versions`: where and when a file was backed up, across
the archives of one or all of the user's computers. Each computer's file catalog
(catalog.py) is brought up to date first: only archives it has not seen are listed.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from homesync import borg, catalog, link, names, restore_plan
from homesync.actions.listing import Login, enrolled_config, find_machine, is_this_machine
from homesync.actions.restore import Source, granted_machine, inside_archive, this_machine
from homesync.catalog import FIRST, LAST, MTIME, PATH, SIZE, TYPE, Catalog
from homesync.config import Paths
from homesync.errors import HomesyncError, NotFoundError, ProtocolError, RepositoryLockedError, UsageError
from homesync.files import write_private

logger = logging.getLogger(__name__)
UPLOAD_PART = 512 << 10  # bytes of the sealed catalog per catalog.put (RPC frames are at most 1 MiB)
NICE = 10  # keep_current runs below the user's own work
MAX_LOG = 256 << 10  # bytes of keep.log kept before it starts again
KEEP_RETRY = 3600  # seconds keep_current goes on trying while backups lock the repository
KEEP_PAUSE = 20  # seconds between those tries
LOCK_WAIT = 300  # seconds a search waits for a refresh of the same catalog (a first one lists every archive)
_RELATIVE = re.compile(r"^(\d+)\s*([hdwm])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1), "m": timedelta(days=30)}


def find(paths: Paths, pattern: str, machine: str | None, login: Callable[[], Login], since: str = "",
         case_sensitive: bool = False, now: datetime | None = None) -> list[dict]:
    """Return every version of the paths matching pattern, newest first, on one computer
    (machine) or all of the user's; raise NotFoundError if none matches."""
    if not pattern.strip():
        raise UsageError("find needs a pattern, e.g. report or *.odt")
    after = parse_since(since, now) if since else ""
    accept = catalog.matcher(pattern, case_sensitive)
    found: dict[tuple, dict] = {}
    searched, pending = 0, 0
    with _sources(paths, machine, login) as sources:
        for source in sources:
            cat, live = _refreshed(paths, source, search=True)
            searched += len(live)
            pending += _missing(cat, live)
            for version in cat.matching(accept):
                held = cat.held(version, live, after)
                if held:
                    _add_row(found, source, version, held)
    rows = list(found.values())
    if not rows:
        where = f"{searched} archives" + (f" since {since}" if since else "")
        hint = ("the newest backups are still being added to the file lists: try again in a minute" if pending
                else "try a shorter part of the name, or *.ext")
        raise NotFoundError(f"no backed-up file matches {pattern!r} ({where} searched)", hint)
    rows.sort(key=lambda r: (r["last_seen"], r["mtime"], r["path"]), reverse=True)
    return rows


def versions(paths: Paths, path: str, machine: str | None, login: Callable[[], Login]) -> list[dict]:
    """Return the distinct versions (by content) of one file of one computer, oldest
    first, each with when it was first and last seen and the archive to restore it from;
    of a folder, the states it was backed up in (_folder_states)."""
    wanted = restore_plan.as_listed(inside_archive(path))
    config = enrolled_config(paths)
    if machine is None and config is None:
        raise UsageError("which computer? pass --machine NAME")
    with _sources(paths, machine or config.machine_id, login) as sources:
        source = next(iter(sources))
        cat, live = _refreshed(paths, source, search=True)
        found = [(v, cat.held(v, live)) for v in cat.matching(lambda p: p == wanted)]
        found = sorted(((v, held) for v, held in found if held), key=lambda f: f[1][0][2])
        if not found:
            raise NotFoundError(f"{source.machine['name']!r} has no backup of {path!r}",
                                "see `homesync find PATTERN`")
        if any(v[TYPE] == "d" for v, _ in found):
            return _folder_states(source, inside_archive(path), wanted, cat, live)
        return _by_content(source, inside_archive(path), found)


def _folder_states(source: Source, path: str, wanted: str, cat: Catalog, live: set[str]) -> list[dict]:
    """Return the versions of a folder, oldest first: each a run of archives in which
    nothing in it changed (no entry below it added, removed or changed in size, times or
    type), with how many files it held, their size, and how many entries changed since
    the version before."""
    prefix = wanted + "/"
    under = [v for v in cat.versions if v[PATH] == wanted or v[PATH].startswith(prefix)]
    states: list[dict] = []
    before: frozenset[int] = frozenset()
    for index, archive in enumerate(cat.archives):
        if archive[1] not in live:
            continue
        present = frozenset(n for n, v in enumerate(under) if v[FIRST] <= index <= v[LAST])
        if not present:
            continue
        if states and present == before:
            states[-1]["_held"].append(archive)
            continue
        files = [under[n] for n in present if under[n][TYPE] != "d"]
        changed = {under[n][PATH] for n in present ^ before} if states else set()
        states.append({"type": "d", "files": len(files), "size": sum(v[SIZE] for v in files),
                       "mtime": max(under[n][MTIME] for n in present), "changed": len(changed), "sha256": None,
                       "_held": [archive]})
        before = present
    for number, state in enumerate(states, start=1):
        held = state.pop("_held")
        state.update(number=number, machine=source.machine["name"], path=path, first_seen=held[0][2],
                     last_seen=held[-1][2], archives=[a[1] for a in held], restore_from=held[-1][1])
    return states


def _by_content(source: Source, path: str, found: list) -> list[dict]:
    """Merge metadata versions whose content is the same into content versions,
    numbered from the oldest. Versions of a size no other version has are distinct
    already; the others are told apart by borg's SHA-256 (one archive each)."""
    sizes = Counter((v[TYPE], v[SIZE]) for v, _ in found)
    merged: dict[str, dict] = {}
    for version, held in found:
        ambiguous = version[TYPE] == "-" and sizes[(version[TYPE], version[SIZE])] > 1
        digest = _sha256(source, held[-1][1], path) if ambiguous else None
        key = digest or f"{version[TYPE]}:{version[SIZE]}"
        entry = merged.setdefault(key, {"sha256": digest, "size": version[SIZE], "mtime": version[MTIME]})
        entry["_held"] = sorted(set(entry.get("_held", [])) | {(a[2], a[1]) for a in held})
        entry["mtime"] = max(entry["mtime"], version[MTIME])
    rows = sorted(merged.values(), key=lambda e: e["_held"][0])
    for number, row in enumerate(rows, start=1):
        held = row.pop("_held")
        row.update(number=number, machine=source.machine["name"], path=path, first_seen=held[0][0],
                   last_seen=held[-1][0], archives=[name for _, name in held], restore_from=held[-1][1])
    return rows


def _sha256(source: Source, archive: str, path: str) -> str:
    argv = borg.make_list_hashes_command(source.access.location, archive, [path])
    lines = borg.run_borg(argv, source.access.environment(), source.passphrase, stdout_lines=True).json["lines"]
    listed = restore_plan.as_listed(path)
    return next((i["sha256"] for i in lines if i["path"] == listed), "")


def _add_row(rows: dict[tuple, dict], source: Source, version: list, held: list) -> None:
    """Add a version to the rows of find, one row per path, size and mtime: a change of
    ctime alone (chmod, chown) is not a version the user would tell apart."""
    key = (source.machine["id"], version[PATH], version[TYPE], version[SIZE], version[MTIME])
    row = rows.setdefault(key, {"machine": source.machine["name"], "path": version[PATH], "type": version[TYPE],
                                "size": version[SIZE], "mtime": version[MTIME], "first_seen": held[0][2],
                                "last_seen": held[-1][2], "archives": []})
    row["first_seen"], row["last_seen"] = min(row["first_seen"], held[0][2]), max(row["last_seen"], held[-1][2])
    row["archives"] = sorted(set(row["archives"]) | {a[1] for a in held}, reverse=True)


def _refreshed(paths: Paths, source: Source, search: bool = False, held: bool = False) -> tuple[Catalog, set[str]]:
    """Return the computer's catalog with every archive the server's index lists in it,
    and those archives' names. When the index names an archive the catalog kept here
    lacks, the one the server keeps (sealed; see keep_current) is fetched first, and
    borg is asked only for what both lack: its listing of archives, then one listing of
    each new archive. One refresh of a computer's catalog at a time (a lock beside it).
    A search (search=True) does not wait for a refresh under way, such as the one after
    each backup, when the catalog holds archives already: it reads the catalog as it
    is, says which backups are not in it yet, and their versions are left out. held: this
    process holds the lock already (the keeping after a backup, given it by the backup)."""
    if not names.is_machine_id(source.machine["id"]):  # it names files here: never a path from the server
        raise ProtocolError(f"the server named a computer {source.machine['id']!r}, which is no machine id")
    indexed = {r["name"] for r in source.rpc.call("archives.list", machine_id=source.machine["id"])
               if r["result"] in ("success", "warning")}
    folder = paths.cache_dir / "files"
    file = folder / f"{source.machine['id']}.catalog"
    cat = Catalog.load(file)  # written atomically: read without the lock, which only a refresh needs
    if not cat.lacks(indexed):
        return cat, indexed
    lock = folder / f"{source.machine['id']}.lock"
    if search and cat.archives and _busy(lock):
        logger.warning("%d of the newest backups of %s are still being added to its file list (after each "
                       "backup, in the background): they are not searched yet; search again in a minute",
                       _missing(cat, indexed), source.machine["name"])
        return cat, indexed
    with nullcontext() if held else _locked(lock):
        cat = Catalog.load(file)  # another refresh may have done it meanwhile
        if cat.lacks(indexed):
            # this computer's own copy on the server is worth fetching only when it is not
            # known what it holds (the cache was cleaned, or this is adopted new hardware)
            if source.login is not None or not (folder / f"{source.machine['id']}.shared").exists():
                kept = _fetch(source)
                if kept is not None and _missing(kept, indexed) < _missing(cat, indexed):
                    cat = kept
                    _remember_shared(folder, source.machine["id"], cat)
            if cat.lacks(indexed):
                cat = _listed(source, cat, indexed)
            cat.save(file)
    return cat, indexed


def _busy(lock: Path) -> bool:
    """Return whether another process holds the catalog's lock (a refresh under way)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _missing(cat: Catalog, indexed: set[str]) -> int:
    return len(indexed - {a[1] for a in cat.archives} - set(cat.absent))


def _listed(source: Source, cat: Catalog, indexed: set[str]) -> Catalog:
    """Add to cat, from borg, every archive of the repository it lacks."""
    listing = borg.run_borg(borg.make_list_archives_command(source.access.location),
                            source.access.environment(), source.passphrase).json
    live = [(a["id"], a["name"], a["start"]) for a in sorted(listing["archives"], key=lambda a: a["start"])
            if not a["name"].endswith(".checkpoint")]
    new, rebuild = cat.to_add(live)
    if rebuild:
        cat = Catalog()
    for archive in new:
        argv = borg.make_list_files_command(source.access.location, archive[1], format=catalog.LIST_FORMAT)
        items = borg.run_borg(argv, source.access.environment(), source.passphrase, stdout_lines=True).json
        cat.add(archive, items["lines"])
    cat.absent = sorted(indexed - {a[1] for a in live})
    return cat


def _fetch(source: Source) -> Catalog | None:
    """Return the catalog the server keeps for the source's computer, unsealed with its
    passphrase; None if it keeps none, or none that opens (it is only a cache)."""
    parts, offset, stamp = [], 0, None
    try:
        while True:
            part = source.rpc.call("catalog.get", machine_id=source.machine["id"], offset=offset)
            if stamp is not None and part["stamp"] != stamp:  # replaced while being read: start again
                parts, offset = [], 0
            stamp = part["stamp"]
            parts.append(part["data"])
            offset += len(part["data"])
            if offset >= part["size"] or not part["data"]:
                break
    except HomesyncError as e:
        logger.debug("no file catalog from the server for %s: %s", source.machine["id"], e.message)
        return None
    return catalog.unseal(b"".join(parts), source.passphrase, source.machine["id"])


def _remember_shared(folder: Path, machine_id: str, cat: Catalog) -> None:
    """Note which archives the server's copy of this catalog holds (keep_current then
    uploads it only when that changes)."""
    write_private(folder / f"{machine_id}.shared", _summary(cat).encode())


def _summary(cat: Catalog) -> str:
    return hashlib.sha256(repr((cat.archives, cat.absent)).encode()).hexdigest()


@contextmanager
def _locked(lock: Path, wait: float | None = None) -> Iterator[None]:
    """Hold the lock of one computer's catalog; after `wait` seconds (LOCK_WAIT) go on
    without it: a refresh that hangs must not hang every search (the catalog is written
    atomically, so two refreshes at once only do the same work twice)."""
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    logger.warning("the file catalog %s is still locked after %d s; going on without the lock",
                                   lock.name, LOCK_WAIT if wait is None else wait)
                    break
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def keep_current(paths: Paths, holding: int | None = None) -> bool:
    """Bring this computer's catalog up to date with its archives (after a backup), and
    give the server a sealed copy when its copy lacks some of them; return whether one
    was sent. While a backup locks the repository it tries again, up to KEEP_RETRY. The
    agent and `homesync backup` run it in the background (start_keeping); holding: the
    descriptor of the catalog's lock, taken by the backup for it, let go before a retry
    (a search with no catalog need not wait through the pauses)."""
    deadline = time.monotonic() + KEEP_RETRY
    while True:
        try:
            return _keep_current(paths, held=holding is not None)
        except RepositoryLockedError:  # the next backup is running: list once it is done
            if time.monotonic() > deadline:
                raise
            if holding is not None:
                os.close(holding)
                holding = None
            logger.info("the repository is locked (a backup?): trying again in %d s", KEEP_PAUSE)
            time.sleep(KEEP_PAUSE)


def _keep_current(paths: Paths, held: bool = False) -> bool:
    config = enrolled_config(paths)
    if config is None:
        return False
    folder = paths.cache_dir / "files"
    with link.machine_session(config, paths) as session:
        source = this_machine(config, paths, session.rpc())
        machine, passphrase = source.machine, source.passphrase
        cat, _ = _refreshed(paths, source, held=held)
        with nullcontext() if held else _locked(folder / f"{machine['id']}.lock"):
            try:
                shared = (folder / f"{machine['id']}.shared").read_text()
            except OSError:
                shared = ""
            if shared == _summary(cat):
                return False
            blob = catalog.seal(cat, passphrase, machine["id"])
            for offset in range(0, max(len(blob), 1), UPLOAD_PART):
                source.rpc.call("catalog.put", offset=offset, data=blob[offset:offset + UPLOAD_PART],
                                final=offset + UPLOAD_PART >= len(blob))
            _remember_shared(folder, machine["id"], cat)
    logger.info("file catalog of %d archives (%d bytes sealed) sent to the server", len(cat.archives), len(blob))
    return True


def start_keeping(paths: Paths, machine_id: str) -> None:
    """Start keep_current in the background, niced, on its own: the backup (and the
    next one, and the agent's status) does not wait for it, and nothing it meets fails
    the backup (a find catches up by itself). Its log: ~/.cache/homesync/files/keep.log.
    The catalog's lock is taken here and handed to it, when free: a search started the
    moment the backup returns sees the keeping under way (and answers from the catalog
    as it is) instead of winning the race to the lock and listing the new archive itself
    while the keeper, still logging in, waits for it."""
    folder = paths.cache_dir / "files"
    held = None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        held = _taken(folder / f"{machine_id}.lock") if names.is_machine_id(machine_id) else None
        log_file = folder / "keep.log"
        mode = "wb" if log_file.exists() and log_file.stat().st_size > MAX_LOG else "ab"  # the last runs only
        argv = [sys.executable, "-m", "homesync.actions.history", "keep-current"]
        with open(log_file, mode, opener=lambda p, f: os.open(p, f, 0o600)) as log:
            subprocess.Popen(argv + ([str(held)] if held is not None else []),
                             pass_fds=() if held is None else (held,), stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log, start_new_session=True, cwd="/")
    except Exception as e:  # noqa: BLE001 - nothing here may fail the backup that was made
        logger.info("could not start keeping the file catalog current: %s", e)
    finally:
        if held is not None:
            os.close(held)  # the keeper's copy of it holds the lock now (or nobody, if it did not start)


def _taken(lock: Path) -> int | None:
    """Return a descriptor holding the catalog's lock, or None if another process holds
    it (the keeping after the backup before, still under way)."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def _keep_main(holding: int | None = None) -> int:
    """`python -m homesync.actions.history keep-current [FD]` (start_keeping's process;
    FD: the catalog's lock, held for it)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s homesync keep-current: %(message)s")
    os.nice(NICE)  # and the borg it runs
    try:
        keep_current(Paths.from_environment(), holding)
    except (HomesyncError, OSError) as e:
        logger.warning("the file catalog was not brought up to date (find will catch up): %s",
                       getattr(e, "message", e))
        return 1
    return 0


@contextmanager
def _sources(paths: Paths, wanted: str | None, login: Callable[[], Login]) -> Iterator[list[Source]]:
    """Give the repositories to search: this computer's with its own key when it is the
    one wanted, else one (wanted) or all of the user's computers, each through a
    one-off key the server grants after a password login (as `restore --machine`)."""
    config = enrolled_config(paths)
    if wanted is not None and is_this_machine(config, wanted):
        with link.machine_session(config, paths) as session:
            yield [this_machine(config, paths, session.rpc())]
        return
    credentials = login()
    with ExitStack() as stack:
        session = stack.enter_context(link.user_session(credentials.server, credentials.fingerprint,
                                                        credentials.user, credentials.password))
        rpc = session.rpc()
        machines = rpc.call("machines.list")
        # a computer without backups has nothing to search: no passphrase is released for it
        chosen = [find_machine(machines, wanted)] if wanted is not None else [m for m in machines if m["archives"]]
        sources, granted = [], []
        try:
            for machine in chosen:
                key_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="homesync-find-key-"))
                source, public_key = granted_machine(paths, credentials, rpc, key_dir, machine)
                granted.append((machine["id"], public_key))
                sources.append(source)
            yield sources
        finally:
            _end_grants(rpc, granted)


def _end_grants(rpc, granted: list[tuple[str, str]]) -> None:
    """End the one-off keys a search was granted (else they would lapse by themselves,
    after their idle time); a failure here only leaves them to lapse."""
    for machine_id, public_key in granted:
        try:
            rpc.call("restore.end", machine_id=machine_id, public_key=public_key)
        except HomesyncError as e:
            logger.info("the one-off key for %s was not ended (it lapses by itself): %s", machine_id, e.message)


def parse_since(text: str, now: datetime | None = None) -> str:
    """Given --since as typed (7d, 12h, 2w, 3m, or a date such as 2026-11-20 or
    2026-11-20 14:00, local time), return the moment as borg's archive start text (UTC);
    raise UsageError if it is neither."""
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(text.strip().lower())
    if relative:
        moment = now - int(relative.group(1)) * _UNITS[relative.group(2)]
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(f"--since {text!r} is not a time", "e.g. --since 7d, 12h, 2w or 2026-11-20") from None
        moment = moment.astimezone(timezone.utc) if moment.tzinfo is None else moment
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


if __name__ == "__main__" and sys.argv[1:2] == ["keep-current"]:
    sys.exit(_keep_main(int(sys.argv[2]) if sys.argv[2:] else None))
