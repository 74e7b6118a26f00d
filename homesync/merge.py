"""Merge a freshly extracted archive tree into a target directory without losing
anything local: identical entries are skipped, differing local entries are kept aside,
protected paths are never touched. Works through directory file descriptors opened
with O_NOFOLLOW, so a local symlink can never lead the merge outside the target.
"""

from __future__ import annotations

import logging
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from homesync.errors import RestoreError

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_OWNER_RWX = stat.S_IRWXU
_OWNER_RX = stat.S_IRUSR | stat.S_IXUSR

StrPath = str | os.PathLike


@dataclass
class MergeResult:
    """What a merge did, or (from scan_plan) would do. Paths are relative to the target;
    a directory kept aside or dropped as a whole is listed once, by its own path."""

    restored: int = 0
    skipped_identical: int = 0
    kept_aside: list[Path] = field(default_factory=list)
    protected_skipped: list[Path] = field(default_factory=list)
    bytes_restored: int = 0


def merge_tree(staging: StrPath, target: StrPath, kept_dir: StrPath, protected: Sequence[StrPath] = (),
               *, restore_root_metadata: bool = False, loosen_root: bool = True,
               keep_local_folders: Sequence[str] = ()) -> MergeResult:
    """Given a staging directory holding an extracted archive, move its entries into
    target, keeping differing local entries aside under kept_dir (same filesystem) and
    leaving protected paths alone; remove the emptied staging directory and return what
    was done. With restore_root_metadata, target itself also takes staging's mode, mtime
    and xattrs (without loosen_root, no mode bit target did not have: someone else's
    home, a template, never opens this one). Folders named in keep_local_folders
    (relative paths: the parents of a `--path`) that exist in target keep their own
    mode and xattrs. Raise RestoreError if the file system refuses an operation."""
    return _run(staging, target, kept_dir, protected, dry=False, root_metadata=restore_root_metadata,
                loosen_root=loosen_root, keep_local_folders=keep_local_folders)


def scan_plan(staging: StrPath, target: StrPath, protected: Sequence[StrPath] = (),
              *, kept_dir: StrPath | None = None) -> MergeResult:
    """Given the same arguments as merge_tree, return what it would do, touching nothing.
    Raise RestoreError if a directory cannot be read."""
    return _run(staging, target, kept_dir, protected, dry=True, root_metadata=False)


def _run(staging: StrPath, target: StrPath, kept_dir: StrPath | None, protected: Sequence[StrPath],
         *, dry: bool, root_metadata: bool, loosen_root: bool = True,
         keep_local_folders: Sequence[str] = ()) -> MergeResult:
    reserved = [staging] + ([kept_dir] if kept_dir is not None else [])
    merger = _Merger(_Rules(target, list(protected), reserved), kept_dir, dry)
    merger.keep_local = set(keep_local_folders)
    try:
        with _opened_dir(target) as tfd:
            with _opened_dir(staging) as sfd:
                root, root_xattrs = os.fstat(sfd), _read_xattrs(sfd)
                merger.merge_root(sfd, tfd, root)
            if not dry:
                os.rmdir(staging)
                if root_metadata:
                    limit = 0o7777 if loosen_root else stat.S_IMODE(os.fstat(tfd).st_mode)
                    _apply_dir_metadata(tfd, root, root_xattrs, mode_limit=limit)
    except OSError as err:
        where = merger.current or os.fspath(staging)
        raise RestoreError(f"restore could not merge {where!r}: {err.strerror or err}",
                           "nothing local was deleted") from err
    return merger.result


@contextmanager
def _opened_dir(path: StrPath) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


class _Rules:
    """Which relative paths are protected (never touched, restored copy dropped) and
    which are their ancestors (merged by descending only, never moved aside)."""

    def __init__(self, target: StrPath, protected: list[StrPath], reserved: list[StrPath]) -> None:
        self.protected: set[str] = set()
        for path in protected + reserved:
            self.protected.update(_relative_forms(target, path))
        self.ancestors: set[str] = set()
        for rel in self.protected:
            parts = rel.split("/")
            self.ancestors.update("/".join(parts[:i]) for i in range(1, len(parts)))

    def is_protected(self, rel: str) -> bool:
        return rel in self.protected

    def is_ancestor(self, rel: str) -> bool:
        return rel in self.ancestors


def _relative_forms(target: StrPath, path: StrPath) -> set[str]:
    """Return path relative to target, both as written and with symlinks resolved;
    empty when it lies outside target (nothing there can be touched anyway)."""
    forms = set()
    for resolve in (os.path.abspath, os.path.realpath):
        base = resolve(os.fsdecode(target))
        cand = resolve(os.fsdecode(path))
        if cand.startswith(base.rstrip("/") + "/"):
            forms.add(os.path.relpath(cand, base))
    return forms


class _Merger:
    """One walk over staging and target; in dry mode it only counts."""

    def __init__(self, rules: _Rules, kept_dir: StrPath | None, dry: bool) -> None:
        self.rules = rules
        self.kept_dir = os.fsdecode(kept_dir) if kept_dir is not None else None
        self.dry = dry
        self.result = MergeResult()
        self.keep_local: set[str] = set()
        self.current = ""
        self.privileged = os.geteuid() == 0
        # Pass one fills these: hard-link groups by inode on each side (only paths
        # that exist in staging), and the totals of every staging directory.
        self.staging_links: dict[tuple[int, int], set[str]] = {}
        self.local_links: dict[tuple[int, int], set[str]] = {}
        self.subtree: dict[str, tuple[int, int]] = {}
        self.file_bytes: dict[str, int] = {}
        self._seen_inodes: set[tuple[int, int]] = set()

    def merge_root(self, sfd: int, tfd: int, root: os.stat_result) -> None:
        """Survey, then merge, the whole staging tree."""
        self.survey_dir(sfd, tfd, "")
        if not self.dry and not self.privileged and root.st_mode & _OWNER_RWX != _OWNER_RWX:
            os.chmod(sfd, stat.S_IMODE(root.st_mode) | _OWNER_RWX)
        self.merge_dir(sfd, tfd, "")

    # -- pass one: survey, read-only ---------------------------------------------------

    def survey_dir(self, sfd: int, tfd: int | None, rel: str) -> tuple[int, int]:
        """Record hard-link groups and totals below one staging directory; return its
        (entry count, byte count)."""
        entries = size = 0
        for name in sorted(os.listdir(sfd)):
            path = _join(rel, name)
            if self.rules.is_protected(path):
                continue
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            local = _lstat(tfd, name)
            entries += 1
            if stat.S_ISDIR(st.st_mode):
                n, b = self._survey_child(sfd, tfd, name, path, st, local)
                self.subtree[path] = (n, b)
                entries += n
                size += b
            elif stat.S_ISREG(st.st_mode):
                size += self._survey_file(path, st, local)
        return entries, size

    def _survey_child(self, sfd: int, tfd: int | None, name: str, path: str,
                      st: os.stat_result, local: os.stat_result | None) -> tuple[int, int]:
        # Only a directory its owner cannot list gets a temporary mode, put back
        # before pass two reads the modes it will restore.
        lend = not self.dry and not self.privileged and st.st_mode & _OWNER_RX != _OWNER_RX
        if lend:
            os.chmod(name, stat.S_IMODE(st.st_mode) | _OWNER_RX, dir_fd=sfd)
        child_s = os.open(name, _DIR_FLAGS, dir_fd=sfd)
        child_t = None
        try:
            if local is not None and stat.S_ISDIR(local.st_mode) and tfd is not None:
                try:
                    child_t = os.open(name, _DIR_FLAGS, dir_fd=tfd)
                except PermissionError:
                    pass  # pass two opens it with its owner's rights restored
            return self.survey_dir(child_s, child_t, path)
        finally:
            os.close(child_s)
            if child_t is not None:
                os.close(child_t)
            if lend:
                os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=sfd)

    def _survey_file(self, path: str, st: os.stat_result, local: os.stat_result | None) -> int:
        size = st.st_size
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            self.staging_links.setdefault(key, set()).add(path)
            if key in self._seen_inodes:
                size = 0
            self._seen_inodes.add(key)
            self.file_bytes[path] = size
        if local is not None and stat.S_ISREG(local.st_mode) and local.st_nlink > 1:
            self.local_links.setdefault((local.st_dev, local.st_ino), set()).add(path)
        return size

    # -- pass two: merge ---------------------------------------------------------------

    def merge_dir(self, sfd: int, tfd: int | None, rel: str) -> None:
        """Merge every entry of one staging directory into its target directory
        (tfd is None in dry mode when the target directory does not exist yet)."""
        for name in sorted(os.listdir(sfd)):
            path = _join(rel, name)
            self.current = path
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            local = _lstat(tfd, name)
            if self.rules.is_protected(path):
                self._drop(sfd, name, path, st)
            elif self.rules.is_ancestor(path):
                self._merge_ancestor(sfd, tfd, name, path, st, local)
            elif local is None:
                self._restore(sfd, tfd, name, path, st)
            elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(local.st_mode):
                self._descend(sfd, tfd, name, path, st, local)
            elif self._identical(sfd, tfd, name, path, st, local):
                self.result.skipped_identical += 1
                if not self.dry:
                    self._remove(sfd, name, st)
            else:
                self._keep_aside(tfd, name, path, local)
                self._restore(sfd, tfd, name, path, st)

    def _merge_ancestor(self, sfd: int, tfd: int | None, name: str, path: str,
                        st: os.stat_result, local: os.stat_result | None) -> None:
        # The way to a protected path is never moved aside or replaced: only a real
        # directory on both sides can be merged, anything else restored here is dropped.
        if not stat.S_ISDIR(st.st_mode) or (local is not None and not stat.S_ISDIR(local.st_mode)):
            self._drop(sfd, name, path, st)
            return
        if local is None:
            self.result.restored += 1
            if not self.dry:
                os.mkdir(name, _OWNER_RWX, dir_fd=tfd)
                local = os.stat(name, dir_fd=tfd, follow_symlinks=False)
        self._descend(sfd, tfd, name, path, st, local)

    def _descend(self, sfd: int, tfd: int | None, name: str, path: str,
                 st: os.stat_result, local: os.stat_result | None) -> None:
        child_s = self._open_dir(sfd, name, st)
        child_t = None
        try:
            if local is not None and tfd is not None:
                child_t = self._open_dir(tfd, name, local)
            self.merge_dir(child_s, child_t, path)
            if not self.dry and path in self.keep_local and local is not None and child_t is not None:
                os.chmod(child_t, stat.S_IMODE(local.st_mode))  # _open_dir may have lent rwx
            elif not self.dry:
                self.current = path
                _apply_dir_metadata(child_t, st, _read_xattrs(child_s))
        finally:
            os.close(child_s)
            if child_t is not None:
                os.close(child_t)
        if not self.dry:
            os.rmdir(name, dir_fd=sfd)

    def _restore(self, sfd: int, tfd: int | None, name: str, path: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            entries, size = self.subtree[path]
            self.result.restored += 1 + entries
            self.result.bytes_restored += size
        else:
            self.result.restored += 1
            if stat.S_ISREG(st.st_mode):
                self.result.bytes_restored += self.file_bytes.get(path, st.st_size)
        if self.dry:
            return
        self._move(sfd, name, tfd, name, st)
        if stat.S_ISDIR(st.st_mode):
            # Some file systems touch a directory's mtime when its ".." changes.
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=tfd, follow_symlinks=False)

    def _keep_aside(self, tfd: int | None, name: str, path: str, local: os.stat_result) -> None:
        self.result.kept_aside.append(Path(path))
        log.debug("keeping local %r aside", path)
        if self.dry:
            return
        if self.kept_dir is None:
            raise RestoreError("no directory to keep local files aside in")
        dest = os.path.join(self.kept_dir, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.lexists(dest):
            raise RestoreError(f"{dest!r} already exists", "choose a new directory for kept-aside files")
        self._move(tfd, name, None, dest, local)

    def _drop(self, sfd: int, name: str, path: str, st: os.stat_result) -> None:
        self.result.protected_skipped.append(Path(path))
        log.debug("dropping restored copy of protected %r", path)
        if not self.dry:
            self._remove(sfd, name, st)

    # -- comparisons ---------------------------------------------------------------------

    def _identical(self, sfd: int, tfd: int | None, name: str, path: str,
                   st: os.stat_result, local: os.stat_result) -> bool:
        """Same kind, mode, and content (link text, device number); for regular files
        also the same hard-link group among the restored paths."""
        if st.st_mode != local.st_mode:
            return False
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(name, dir_fd=sfd) == os.readlink(name, dir_fd=tfd)
        if stat.S_ISREG(st.st_mode):
            return (st.st_size == local.st_size and self._same_links(path, st, local)
                    and _same_content(sfd, tfd, name, st.st_size))
        return st.st_rdev == local.st_rdev

    def _same_links(self, path: str, st: os.stat_result, local: os.stat_result) -> bool:
        # Looked up by inode alone: skipping an earlier name has already lowered st_nlink.
        mine = {path}
        restored = self.staging_links.get((st.st_dev, st.st_ino), mine)
        existing = self.local_links.get((local.st_dev, local.st_ino), mine)
        return restored == existing

    # -- file system operations ------------------------------------------------------------

    def _open_dir(self, parent_fd: int, name: str, st: os.stat_result) -> int:
        """Open a directory we lstat'ed, first giving its owner rwx if we are going to
        move entries in or out of it (the final mode is set afterwards)."""
        if not self.dry and not self.privileged and st.st_mode & _OWNER_RWX != _OWNER_RWX:
            os.chmod(name, stat.S_IMODE(st.st_mode) | _OWNER_RWX, dir_fd=parent_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)

    def _move(self, src_fd: int | None, src: str, dst_fd: int | None, dst: str, st: os.stat_result) -> None:
        # Moving a directory to a new parent rewrites its "..", which needs write access.
        lend_write = stat.S_ISDIR(st.st_mode) and not self.privileged and not st.st_mode & stat.S_IWUSR
        if lend_write:
            os.chmod(src, stat.S_IMODE(st.st_mode) | stat.S_IWUSR, dir_fd=src_fd)
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        if lend_write:
            os.chmod(dst, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)

    def _remove(self, dir_fd: int, name: str, st: os.stat_result) -> None:
        """Delete a restored copy from staging (never called on local data)."""
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        fd = self._open_dir(dir_fd, name, st)
        try:
            for child in os.listdir(fd):
                self._remove(fd, child, os.stat(child, dir_fd=fd, follow_symlinks=False))
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _lstat(dir_fd: int | None, name: str) -> os.stat_result | None:
    if dir_fd is None:
        return None
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _same_content(sfd: int, tfd: int | None, name: str, size: int) -> bool:
    """Compare two regular files byte for byte; an unreadable one counts as different."""
    try:
        a = os.open(name, _FILE_FLAGS, dir_fd=sfd)
    except OSError:
        return False
    try:
        b = os.open(name, _FILE_FLAGS, dir_fd=tfd)
    except OSError:
        os.close(a)
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if not stat.S_ISREG(os.fstat(b).st_mode) or os.fstat(b).st_size != size:
            return False
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True


def _read_xattrs(fd: int) -> dict[str, bytes]:
    try:
        return {name: os.getxattr(fd, name) for name in os.listxattr(fd)}
    except OSError as err:
        log.debug("cannot read xattrs: %s", err)
        return {}


def _apply_dir_metadata(fd: int | None, st: os.stat_result, xattrs: dict[str, bytes],
                        mode_limit: int = 0o7777) -> None:
    """Give a target directory the restored one's xattrs, mode (no bit outside
    mode_limit) and mtime, in that order: a user may set xattrs only while the directory
    is writable."""
    if fd is None:
        return
    for name, value in xattrs.items():
        try:
            os.setxattr(fd, name, value)
        except OSError as err:
            log.debug("cannot set xattr %s: %s", name, err)
    os.chmod(fd, stat.S_IMODE(st.st_mode) & mode_limit)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
