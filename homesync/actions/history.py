"""`homesync find` and `homesync versions`: where and when a file was backed up, across
the archives of one or all of the user's computers. Each computer's file catalog
(catalog.py) is brought up to date first: only archives it has not seen are listed.
"""

from __future__ import annotations

import re
from collections import Counter
import tempfile
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from homesync import borg, catalog, link, restore_plan
from homesync.actions.listing import Login, enrolled_config, find_machine, is_this_machine
from homesync.actions.restore import Source, inside_archive, one_off_key
from homesync.catalog import MTIME, PATH, SIZE, TYPE, Catalog
from homesync.config import Paths
from homesync.errors import NotFoundError, UsageError

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
    searched = 0
    with _sources(paths, machine, login) as sources:
        for source in sources:
            cat, live = _refreshed(paths, source)
            searched += len(live)
            for version in cat.matching(accept):
                held = cat.held(version, live, after)
                if held:
                    _add_row(found, source, version, held)
    rows = list(found.values())
    if not rows:
        where = f"{searched} archives" + (f" since {since}" if since else "")
        raise NotFoundError(f"no backed-up file matches {pattern!r} ({where} searched)",
                            "try a shorter part of the name, or *.ext")
    rows.sort(key=lambda r: (r["last_seen"], r["mtime"], r["path"]), reverse=True)
    return rows


def versions(paths: Paths, path: str, machine: str | None, login: Callable[[], Login]) -> list[dict]:
    """Return the distinct versions (by content) of one file of one computer, oldest
    first, each with when it was first and last seen and the archive to restore it from."""
    wanted = restore_plan.as_listed(inside_archive(path))
    config = enrolled_config(paths)
    if machine is None and config is None:
        raise UsageError("which computer? pass --machine NAME")
    with _sources(paths, machine or config.machine_id, login) as sources:
        source = next(iter(sources))
        cat, live = _refreshed(paths, source)
        found = [(v, cat.held(v, live)) for v in cat.matching(lambda p: p == wanted)]
        found = sorted(((v, held) for v, held in found if held), key=lambda f: f[1][0][2])
        if not found:
            raise NotFoundError(f"{source.machine['name']!r} has no backup of {path!r}",
                                "see `homesync find PATTERN`")
        if any(v[TYPE] == "d" for v, _ in found):
            raise UsageError(f"{path!r} is a folder", "versions lists one file's versions; restore a folder "
                                                      "with `homesync restore --path`")
        return _by_content(source, inside_archive(path), found)


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


def _refreshed(paths: Paths, source: Source) -> tuple[Catalog, set[str]]:
    """Return the computer's catalog with every archive the server's index lists in it,
    and those archives' names. borg is asked only when the index names an archive the
    catalog lacks: its listing of archives, then one listing of each new archive."""
    indexed = {r["name"] for r in source.rpc.call("archives.list", machine_id=source.machine["id"])
               if r["result"] in ("success", "warning")}
    file = paths.cache_dir / "files" / f"{source.machine['id']}.catalog"
    cat = Catalog.load(file)
    if cat.lacks(indexed):
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
        cat.save(file)
    return cat, indexed


@contextmanager
def _sources(paths: Paths, wanted: str | None, login: Callable[[], Login]) -> Iterator[list[Source]]:
    """Give the repositories to search: this computer's with its own key when it is the
    one wanted, else one (wanted) or all of the user's computers, each through a
    one-off key the server grants after a password login (as `restore --machine`)."""
    config = enrolled_config(paths)
    if wanted is not None and is_this_machine(config, wanted):
        with link.machine_session(config, paths) as session:
            machine = {"id": config.machine_id, "name": config.machine_name}
            yield [Source(link.machine_repository(config, paths), paths.passphrase_file.read_bytes(), machine,
                          session.rpc())]
        return
    credentials = login()
    with ExitStack() as stack:
        session = stack.enter_context(link.user_session(credentials.server, credentials.fingerprint,
                                                        credentials.user, credentials.password))
        rpc = session.rpc()
        machines = rpc.call("machines.list")
        # a computer without backups has nothing to search: no passphrase is released for it
        chosen = [find_machine(machines, wanted)] if wanted is not None else [m for m in machines if m["archives"]]
        sources = []
        for machine in chosen:
            key_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="homesync-find-key-"))
            key_file, public_key = one_off_key(key_dir)
            grant = rpc.call("restore.grant", machine_id=machine["id"], public_key=public_key)
            access = link.RepositoryAccess(credentials.server, credentials.fingerprint, machine["id"], key_file, paths)
            sources.append(Source(access, grant["passphrase"], machine, rpc, credentials))
        yield sources


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
