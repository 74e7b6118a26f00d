"""What the watcher and the fallback scan ignore: exactly what backups leave out. The
borg --exclude patterns the backup uses (relative to the source), absolute paths
(homesync's own directories), CACHEDIR.TAG directories and marker files like `.nobackup`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from homesync.agent.patterns import compile_pattern

CACHEDIR_TAG = "CACHEDIR.TAG"
# The same test as borg's --exclude-caches: the tag must start with this signature.
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
DEFAULT_MARKERS = (".nobackup",)
_CACHE_LIMIT = 16384


class Exclusions:
    """Excluded paths under a source tree, built from the same inputs as `borg create`:

    patterns → `--exclude PATTERN` (borg styles, relative to source), markers →
    `--exclude-if-present NAME`, exclude_caches → `--exclude-caches`; paths are absolute
    paths excluded with everything below them (homesync's own directories).
    """

    def __init__(self, paths: Iterable[str | os.PathLike] = (), *, source: str | os.PathLike | None = None,
                 patterns: Iterable[str] = (), markers: Iterable[str] = DEFAULT_MARKERS,
                 exclude_caches: bool = True) -> None:
        self.paths = tuple(sorted({os.path.normpath(os.path.abspath(p)) for p in paths}))
        self.source = os.path.normpath(os.path.abspath(source)) if source is not None else None
        self.patterns = tuple(patterns)
        self.markers = tuple(markers)
        self.exclude_caches = exclude_caches
        self._matchers = [compile_pattern(p) for p in self.patterns]
        # directory -> (inode, mtime_ns, marked): creating a marker changes the directory's mtime.
        self._marked: dict[str, tuple[int, int, bool]] = {}

    def is_marker(self, name: str) -> bool:
        """Return True if a file of this name can exclude its directory."""
        return name in self.markers or (self.exclude_caches and name == CACHEDIR_TAG)

    def excludes_path(self, path: str) -> bool:
        """Return True if a pattern or an excluded path covers path (no file system access)."""
        if any(path == excluded or path.startswith(excluded + os.sep) for excluded in self.paths):
            return True
        if self._matchers and self.source is not None and path.startswith(self.source + os.sep):
            relative = path[len(self.source) + 1:]
            return any(match(relative) for match in self._matchers)
        return False

    def excludes_dir(self, directory: str) -> bool:
        """Return True if this directory is excluded by a pattern, a path or a marker inside it."""
        return self.excludes_path(directory) or self._has_marker(directory)

    def excludes(self, path: str, *, is_dir: bool = False) -> bool:
        """Return True if path is excluded: by pattern or path, or by a marker in a directory
        on the way up to the source (or to / without a source)."""
        if self.excludes_path(path) or (is_dir and self._has_marker(path)):
            return True
        stop = self.source or ""
        directory = os.path.dirname(path)
        while len(directory) >= len(stop):
            if self._has_marker(directory):
                return True
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
        return False

    def _has_marker(self, directory: str) -> bool:
        """Return True if the directory holds a marker file or a valid CACHEDIR.TAG (cached by mtime)."""
        if not self.markers and not self.exclude_caches:
            return False
        try:
            st = os.stat(directory)
        except OSError:
            return False
        cached = self._marked.get(directory)
        if cached is not None and cached[:2] == (st.st_ino, st.st_mtime_ns):
            return cached[2]
        marked = any(os.path.lexists(os.path.join(directory, m)) for m in self.markers)
        marked = marked or (self.exclude_caches and _is_cache_tag(os.path.join(directory, CACHEDIR_TAG)))
        if len(self._marked) >= _CACHE_LIMIT:
            self._marked.clear()
        self._marked[directory] = (st.st_ino, st.st_mtime_ns, marked)
        return marked


def _is_cache_tag(path: str) -> bool:
    """Return True if path is a CACHEDIR.TAG with the standard signature."""
    try:
        with open(path, "rb") as tag:
            return tag.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False
