"""File trees for tests, the demo and the benchmarks: hypothesis strategies for awkward
trees built on disk, snapshots that compare trees bit for bit, and a deterministic
generator of realistic home directories (with a mutator for a second backup).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

from hypothesis import strategies as st

# --------------------------------------------------------------------------------------
# Tree specifications and the strategies that draw them
# --------------------------------------------------------------------------------------


@dataclass
class FileNode:
    content: bytes
    mode: int
    mtime_ns: int
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class SymlinkNode:
    target: bytes
    mtime_ns: int


@dataclass
class DirNode:
    children: dict[bytes, "Node"]
    mode: int
    mtime_ns: int
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


Node = Union[FileNode, SymlinkNode, DirNode]


@dataclass
class TreeSpec:
    """A tree to build: the root directory, then extra names (path, existing file path)
    that become hard links to files of the tree."""

    root: DirNode
    hardlinks: list[tuple[bytes, bytes]] = field(default_factory=list)

    def paths(self) -> dict[bytes, Node]:
        """Return every node of the tree by relative path (b'.' is the root)."""
        found: dict[bytes, Node] = {b".": self.root}
        todo = [(b"", self.root)]
        while todo:
            rel, node = todo.pop()
            for name, child in node.children.items():
                path = rel + b"/" + name if rel else name
                found[path] = child
                if isinstance(child, DirNode):
                    todo.append((path, child))
        return found


_CAFE = "café"
AWKWARD_NAMES = [
    b"with space", b" leading space", b"trailing space ", b'"double quotes"', b"it's",
    b"-rf", b"--help", b"new\nline", b"tab\there", b"back\\slash", b"star*?[x]", b"$HOME", b"~",
    b".hidden", b"..dots", unicodedata.normalize("NFC", _CAFE).encode(),
    unicodedata.normalize("NFD", _CAFE).encode(), "日本語のファイル".encode(), "🎉 party".encode(),
    b"\xff\xfe", b"latin1-caf\xe9", b"\x80\x81", b"x" * 255,
]
FILE_MODES = [0o600, 0o644, 0o755, 0o700, 0o444]
DIR_MODES = [0o700, 0o750, 0o755, 0o775]
XATTR_NAMES = [b"user.comment", b"user.mime_type", b"user.homesync.test", b"user.empty"]
SYMLINK_TARGETS = [b"../x", b"/etc/hostname", b"/nonexistent/dangling", b".", b"..",
                   b"sibling", b"\xff\xfe", b"dir with space/file", b"-rf"]
# borg 1.4 clamps timestamps to [1970, 2038-01-17T03:14:07Z] (helpers/time.py safe_ns).
MAX_MTIME_NS = (2**31 - 1 - 48 * 3600) * 10**9


def _as_name(raw: bytes) -> bytes:
    """Make any non-empty bytes a valid entry name (no '/', no NUL, not '.' or '..')."""
    name = raw.replace(b"/", b"_").replace(b"\0", b"_")[:255]
    return b"_" + name if name in (b".", b"..") else name


def names() -> st.SearchStrategy[bytes]:
    """Names for directory entries: awkward fixed ones, random text, random bytes."""
    text = st.text(st.characters(exclude_characters="/\0", exclude_categories=("Cs",)), min_size=1, max_size=16)
    return st.one_of(
        st.sampled_from(AWKWARD_NAMES),
        text.map(lambda s: s.encode()),
        st.binary(min_size=1, max_size=12),
    ).map(_as_name)


def unique_name(name: bytes, taken) -> bytes:
    """Return name, or name with a number appended, whichever is not in taken."""
    stem, n = name[:240], 0
    while name in taken:
        n += 1
        name = stem + b"~%d" % n
    return name


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def contents() -> st.SearchStrategy[bytes]:
    """File contents: empty, tiny, shared (duplicates), a few KB, occasionally ~200 KB."""
    seeds = st.integers(0, 2**32)
    return st.one_of(
        st.just(b""),
        st.binary(max_size=64),
        st.sampled_from([b"same content\n", b"#!/bin/sh\necho hi\n"]),
        st.builds(_random_bytes, seeds, st.integers(1, 4096)),
        st.builds(_random_bytes, seeds, st.integers(100_000, 200_000)),
    )


def mtimes() -> st.SearchStrategy[int]:
    return st.integers(1, MAX_MTIME_NS)


def xattr_dicts() -> st.SearchStrategy[dict[bytes, bytes]]:
    return st.dictionaries(st.sampled_from(XATTR_NAMES), st.binary(max_size=32), max_size=2)


def files() -> st.SearchStrategy[FileNode]:
    return st.builds(FileNode, contents(), st.sampled_from(FILE_MODES), mtimes(), xattr_dicts())


def symlinks() -> st.SearchStrategy[SymlinkNode]:
    return st.builds(SymlinkNode, st.one_of(st.sampled_from(SYMLINK_TARGETS), names()), mtimes())


def dirs(depth: int, max_children: int = 5) -> st.SearchStrategy[DirNode]:
    """Directories nested at most depth levels below this one (empty ones included)."""
    leaf = st.one_of(files(), files(), symlinks())
    child = leaf if depth == 0 else st.one_of(leaf, dirs(depth - 1, max_children))
    children = st.dictionaries(names(), child, max_size=max_children)
    return st.builds(DirNode, children, st.sampled_from(DIR_MODES), mtimes(), xattr_dicts())


@st.composite
def tree_specs(draw, max_depth: int = 3, max_children: int = 5, hardlinks: bool = True) -> TreeSpec:
    """A strategy for whole trees: nested and empty directories, files, symlinks,
    hard links (2-3 names for one inode), xattrs, modes, ns mtimes, awkward names."""
    spec = TreeSpec(draw(dirs(max_depth, max_children)))
    if not hardlinks:
        return spec
    nodes = spec.paths()
    file_paths = sorted(p for p, n in nodes.items() if isinstance(n, FileNode))
    dir_paths = sorted(p for p, n in nodes.items() if isinstance(n, DirNode))
    if not file_paths:
        return spec
    for _ in range(draw(st.integers(0, 3))):
        existing = draw(st.sampled_from(file_paths))
        for _ in range(draw(st.integers(1, 2))):
            where = draw(st.sampled_from(dir_paths))
            parent = nodes[where]
            name = unique_name(draw(names()), parent.children)
            path = name if where == b"." else where + b"/" + name
            parent.children[name] = _HARDLINK  # reserve the name in the spec
            spec.hardlinks.append((path, existing))
    return spec


def kitchen_sink() -> TreeSpec:
    """Return one fixed tree holding every awkward case at once (a known example for
    the hypothesis tests and a quick fixture for end-to-end tests)."""
    t = 1_234_567_890_123_456_789
    awkward = {name: FileNode(name * 3, FILE_MODES[i % len(FILE_MODES)], t + i, {b"user.comment": name[:32]})
               for i, name in enumerate(AWKWARD_NAMES)}
    nested = DirNode({b"empty": DirNode({}, 0o700, t + 1), b"deeper": DirNode(
        {b"big.bin": FileNode(_random_bytes(7, 200_000), 0o600, t + 2)}, 0o750, t + 3)}, 0o755, t + 4, {b"user.dir": b"1"})
    links = {b"link-" + target.replace(b"/", b"_"): SymlinkNode(target, t + 5) for target in SYMLINK_TARGETS}
    root = DirNode({**awkward, b"nested dir": nested, b"links": DirNode(links, 0o755, t + 6),
                    b"original": FileNode(b"one inode, three names", 0o644, t + 7, {b"user.mime_type": b"text/plain"}),
                    b"empty file": FileNode(b"", 0o644, t + 8)}, 0o750, t + 9, {b"user.root": b"r"})
    spec = TreeSpec(root, [(b"nested dir/second name", b"original"), (b"links/third name", b"original")])
    nested.children[b"second name"] = _HARDLINK
    root.children[b"links"].children[b"third name"] = _HARDLINK
    return spec


class _HardLinkPlaceholder:
    """Marks a name taken by a hard link; build_tree skips it in the first pass."""

    def __repr__(self) -> str:
        return "<hard link>"


_HARDLINK = _HardLinkPlaceholder()


# --------------------------------------------------------------------------------------
# Building a tree on disk
# --------------------------------------------------------------------------------------

_xattr_support: dict[int, bool] = {}


def xattrs_supported(path: Path) -> bool:
    """Return whether the file system holding path (a directory) takes user xattrs."""
    dev = os.stat(path).st_dev
    if dev not in _xattr_support:
        with tempfile.NamedTemporaryFile(dir=path) as probe:
            try:
                os.setxattr(probe.name, b"user.homesync.probe", b"1")
                _xattr_support[dev] = True
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise
                _xattr_support[dev] = False
    return _xattr_support[dev]


def build_tree(root: Path, spec: TreeSpec, xattrs: bool | None = None) -> None:
    """Create spec under root (created if missing; its own metadata is set from the
    spec's root). xattrs: None means "if the file system supports them"."""
    root_b = os.fsencode(root)
    os.makedirs(root_b, exist_ok=True)
    if xattrs is None:
        xattrs = xattrs_supported(root)
    made_dirs: list[tuple[bytes, DirNode]] = [(root_b, spec.root)]
    _build_dir(root_b, spec.root, xattrs, made_dirs)
    for new, existing in spec.hardlinks:
        os.link(os.path.join(root_b, existing), os.path.join(root_b, new), follow_symlinks=False)
    # Deepest first: creating entries changes a directory's mtime.
    for path, node in sorted(made_dirs, key=lambda d: d[0].count(b"/"), reverse=True):
        _set_xattrs(path, node.xattrs, xattrs)
        os.chmod(path, node.mode)
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)


def _build_dir(path: bytes, node: DirNode, xattrs: bool, made_dirs: list) -> None:
    for name, child in node.children.items():
        child_path = os.path.join(path, name)
        if isinstance(child, DirNode):
            os.mkdir(child_path, 0o700)
            made_dirs.append((child_path, child))
            _build_dir(child_path, child, xattrs, made_dirs)
        elif isinstance(child, FileNode):
            with open(child_path, "wb") as f:
                f.write(child.content)
            _set_xattrs(child_path, child.xattrs, xattrs)
            os.chmod(child_path, child.mode)
            os.utime(child_path, ns=(child.mtime_ns, child.mtime_ns))
        elif isinstance(child, SymlinkNode):
            os.symlink(child.target, child_path)
            os.utime(child_path, ns=(child.mtime_ns, child.mtime_ns), follow_symlinks=False)


def _set_xattrs(path: bytes, values: dict[bytes, bytes], enabled: bool) -> None:
    if enabled:
        for key, value in values.items():
            os.setxattr(path, key, value, follow_symlinks=False)


# --------------------------------------------------------------------------------------
# Snapshots and their comparison
# --------------------------------------------------------------------------------------

Snapshot = dict[bytes, dict]
_IGNORED_XATTRS = {b"security.selinux"}


def snapshot(root: Path, exclude: Iterable[str | bytes | os.PathLike] = ()) -> Snapshot:
    """Return every entry below root (b'.' is root itself) by relative bytes path:
    kind, mode, size, sha256, mtime_ns, symlink target, xattrs, and for regular files
    with several names in the tree, the sorted tuple of those names ("links").
    exclude: relative paths whose entries (and subtrees) are left out."""
    root_b = os.fsencode(root)
    skip = {os.fsencode(e).rstrip(b"/") for e in exclude}
    entries: Snapshot = {}
    inodes: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    todo = [b"."]
    while todo:
        rel = todo.pop()
        path = root_b if rel == b"." else os.path.join(root_b, rel)
        entry, st_ = _describe(path)
        entries[rel] = entry
        if entry["kind"] == "dir":
            for name in os.listdir(path):
                child = name if rel == b"." else rel + b"/" + name
                if child not in skip:
                    todo.append(child)
        elif entry["kind"] == "file":
            inodes[(st_.st_dev, st_.st_ino)].append(rel)
    for paths in inodes.values():
        if len(paths) > 1:
            for p in paths:
                entries[p]["links"] = tuple(sorted(paths))
    return entries


def _describe(path: bytes) -> tuple[dict, os.stat_result]:
    st_ = os.lstat(path)
    entry: dict = {"mode": oct(stat.S_IMODE(st_.st_mode)), "mtime_ns": st_.st_mtime_ns}
    if stat.S_ISLNK(st_.st_mode):
        entry.update(kind="symlink", target=os.readlink(path))
    elif stat.S_ISDIR(st_.st_mode):
        entry.update(kind="dir")
    elif stat.S_ISREG(st_.st_mode):
        entry.update(kind="file", size=st_.st_size, sha256=_sha256(path), links=None)
    else:
        entry.update(kind="other", type=stat.S_IFMT(st_.st_mode), rdev=st_.st_rdev)
    entry["xattrs"] = _xattrs(path)
    return entry, st_


def _sha256(path: bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names_ = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names_)
            if n.encode() not in _IGNORED_XATTRS}


def show_path(path: bytes) -> str:
    """Return a relative bytes path as readable text (escapes for odd bytes and newlines)."""
    return repr(path.decode("utf-8", "backslashreplace"))


def diff_snapshots(a: Snapshot, b: Snapshot, ignore_root: bool = False,
                   ignore: Iterable[str] = ()) -> list[str]:
    """Return readable differences between two snapshots (empty when they are equal).
    ignore: field names not to compare (e.g. "mtime_ns")."""
    skipped = set(ignore)
    lines = []
    for path in sorted(a.keys() | b.keys()):
        if ignore_root and path == b".":
            continue
        if path not in b:
            lines.append(f"only in first: {show_path(path)} ({a[path]['kind']})")
        elif path not in a:
            lines.append(f"only in second: {show_path(path)} ({b[path]['kind']})")
        else:
            for key in sorted(a[path].keys() | b[path].keys()):
                va, vb = a[path].get(key), b[path].get(key)
                if key not in skipped and va != vb:
                    if key == "links":
                        va = va and [show_path(p) for p in va]
                        vb = vb and [show_path(p) for p in vb]
                    lines.append(f"{show_path(path)}: {key} {va!r} != {vb!r}")
    return lines


def assert_same_tree(a: Snapshot | Path, b: Snapshot | Path, ignore_root: bool = False,
                     exclude: Iterable[str | bytes] = (), ignore: Iterable[str] = ()) -> None:
    """Assert two trees (paths or snapshots) are identical; the message lists the
    differences. exclude applies to trees given as paths."""
    exclude = list(exclude)
    snap_a = a if isinstance(a, dict) else snapshot(a, exclude)
    snap_b = b if isinstance(b, dict) else snapshot(b, exclude)
    differences = diff_snapshots(snap_a, snap_b, ignore_root, ignore)
    if differences:
        shown = "\n  ".join(differences[:40])
        more = f"\n  ... and {len(differences) - 40} more" if len(differences) > 40 else ""
        raise AssertionError(f"trees differ in {len(differences)} ways:\n  {shown}{more}")


# --------------------------------------------------------------------------------------
# Realistic home directories
# --------------------------------------------------------------------------------------

HOME_EXCLUDED = (".cache", ".local/share/Trash")
_EPOCH = 1_700_000_000  # 2023-11-14: mtimes spread over the two years before it
_WORDS = ("the backup report server laptop meeting budget invoice project quarterly "
          "review holiday photo family network policy restore archive school lab teacher "
          "students homework deadline draft final version notes ideas shopping list recipe "
          "garden weekend travel train ticket hotel booking contract signature").split()
CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# This is a cache directory.\n"


@dataclass
class HomeStats:
    """What make_home wrote; the excluded part is what backups leave out."""

    files: int = 0
    bytes: int = 0
    excluded_files: int = 0
    excluded_bytes: int = 0
    excluded: tuple[str, ...] = HOME_EXCLUDED


class _Home:
    """Writes a home directory file by file with deterministic content and mtimes."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = Path(root)
        self.rng = random.Random(seed)
        self.key = hashlib.sha256(b"homesync-home-%d" % seed).digest()[:16]
        self.counter = 0
        self.stats = HomeStats()
        self.corpus = self._make_corpus()

    def _make_corpus(self) -> str:
        lines = []
        for _ in range(600):
            words = self.rng.choices(_WORDS, k=self.rng.randint(4, 16))
            lines.append(" ".join(words).capitalize() + ".")
        return "\n".join(lines) + "\n"

    def noise(self, size: int) -> bytes:
        """Incompressible, never-repeating bytes (AES-CTR keystream)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self.counter += 1
        # the counter in the nonce's high half: consecutive calls never share keystream
        nonce = (self.counter << 64).to_bytes(16, "big")
        return Cipher(algorithms.AES(self.key), modes.CTR(nonce)).encryptor().update(bytes(size))

    def text(self, size: int) -> bytes:
        out = io.StringIO()
        while out.tell() < size:
            start = self.rng.randrange(len(self.corpus) - 200)
            out.write(self.corpus[start:start + self.rng.randint(200, 4000)])
        return out.getvalue()[:size].encode()

    def office(self, size: int) -> bytes:
        """A zip container shaped like an .odt/.docx (deterministic timestamps)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(zipfile.ZipInfo("mimetype", (2023, 1, 1, 0, 0, 0)), "application/vnd.oasis.opendocument.text")
            body = b"<office:text>" + self.text(max(size * 3, 100)) + b"</office:text>"
            z.writestr(zipfile.ZipInfo("content.xml", (2023, 1, 1, 0, 0, 0)), body, zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    def mtime(self, later: bool = False) -> int:
        base = _EPOCH + (86400 * 30 if later else -self.rng.randrange(2 * 365 * 86400))
        return base * 10**9 + self.rng.randrange(10**9)

    def write(self, rel: str, data: bytes, mode: int = 0o644, later: bool = False) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
        t = self.mtime(later)
        os.utime(path, ns=(t, t))
        excluded = any(rel == e or rel.startswith(e + "/") for e in HOME_EXCLUDED)
        self.stats.files += 1
        self.stats.bytes += len(data)
        if excluded:
            self.stats.excluded_files += 1
            self.stats.excluded_bytes += len(data)
        return path

    def symlink(self, rel: str, target: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        t = self.mtime()
        os.utime(path, ns=(t, t), follow_symlinks=False)

    def sizes(self, count: int, budget: int, minimum: int = 1) -> list[int]:
        """Split budget into count sizes with a long tail."""
        weights = [self.rng.lognormvariate(0, 1) for _ in range(count)]
        total = sum(weights) or 1
        return [max(minimum, int(budget * w / total)) for w in weights]

    def finish_dirs(self) -> None:
        for dirpath, dirnames, _ in sorted(os.walk(self.root), key=lambda d: -d[0].count(os.sep)):
            t = self.mtime()
            os.utime(dirpath, ns=(t, t), follow_symlinks=False)


def make_home(root: Path, seed: int, files: int = 2000, total_bytes: int = 200 << 20) -> HomeStats:
    """Write a realistic-looking home directory under root, the same for the same seed:
    dotfiles and ~/.config, Documents (text and office-like zips), Pictures
    (incompressible), a git-like project of many small files, two large files, some
    duplicates, and a ~/.cache (with CACHEDIR.TAG) and a Trash that backups exclude.
    files and total_bytes are approximate targets (at least about 60 files are written)."""
    home = _Home(root, seed)
    home.root.mkdir(parents=True, exist_ok=True)
    files = max(files, 60)
    counts = {"config": max(8, files // 20), "docs": files // 5, "pics": max(3, files // 12),
              "dups": max(2, files // 25), "junk": max(4, files // 30)}
    counts["code"] = max(10, files - sum(counts.values()) - 2 - 12)
    budget = {"docs": total_bytes * 12 // 100, "pics": total_bytes * 40 // 100, "large": total_bytes * 25 // 100,
              "code": total_bytes * 5 // 100, "config": total_bytes // 100, "junk": total_bytes * 3 // 100}
    _dotfiles(home)
    _config(home, counts["config"], budget["config"])
    docs = _documents(home, counts["docs"], budget["docs"])
    pics = _pictures(home, counts["pics"], budget["pics"])
    _project(home, counts["code"], budget["code"])
    home.write("Videos/holiday 2023.mp4", home.noise(budget["large"] * 2 // 3))
    _duplicates(home, counts["dups"], docs + pics)
    _junk(home, counts["junk"], budget["junk"])
    # The last large file takes whatever is left of the byte budget.
    home.write("Downloads/debian-12-netinst.iso", home.noise(max(1000, total_bytes - home.stats.bytes)))
    home.finish_dirs()
    os.chmod(home.root, 0o750)
    t = home.mtime()
    os.utime(home.root, ns=(t, t))
    return home.stats


def _dotfiles(home: _Home) -> None:
    home.write(".bashrc", b"# ~/.bashrc\nexport EDITOR=vim\nalias ll='ls -l'\n" + home.text(2000))
    home.write(".profile", b"# ~/.profile\n[ -f ~/.bashrc ] && . ~/.bashrc\n")
    home.write(".bash_history", b"\n".join(b"ls -l %d" % i for i in range(500)) + b"\n", 0o600)
    home.write(".gitconfig", b"[user]\n\tname = Joe\n\temail = joe@example.com\n")
    home.write(".ssh/config", b"Host build\n  HostName build.corp.example.com\n", 0o600)
    home.write(".ssh/id_ed25519", b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + home.noise(300).hex().encode()
               + b"\n-----END OPENSSH PRIVATE KEY-----\n", 0o600)
    home.write(".ssh/known_hosts", home.text(800), 0o644)
    os.chmod(home.root / ".ssh", 0o700)
    home.write(".local/bin/backup-photos", b"#!/bin/sh\nrsync -a ~/Pictures /media/usb/\n", 0o755)
    home.symlink(".local/bin/webapp", "../../Projects/webapp/bin/run.sh")
    home.symlink(".mozilla/firefox/abc.default/lock", "127.0.1.1:+4242")  # dangling, as Firefox does


def _config(home: _Home, count: int, budget: int) -> None:
    apps = ["gtk-3.0", "libreoffice/4/user", "Code/User", "pulse", "evolution/sources", "autostart"]
    for i, size in enumerate(home.sizes(count, budget, 20)):
        app = apps[i % len(apps)]
        home.write(f".config/{app}/settings-{i}.conf", b"[general]\n" + home.text(size))


def _documents(home: _Home, count: int, budget: int) -> list[str]:
    made = []
    folders = ["Documents", "Documents", "Documents/Work", "Documents/Work/2023 Reports", "Documents/School",
               "Documents/School", "Desktop"]
    for i, size in enumerate(home.sizes(count, budget, 50)):
        folder = folders[i % len(folders)]
        kind = i % 4
        if kind == 0:
            rel, data = f"{folder}/report-{i:04d}.odt", home.office(size)
        elif kind == 1:
            rel, data = f"{folder}/Meeting notes {i}.txt", home.text(size)
        elif kind == 2:
            rel, data = f"{folder}/budget_{i}.docx", home.office(size)
        else:
            rel, data = f"{folder}/draft {i} (copy).md", b"# Draft\n\n" + home.text(size)
        home.write(rel, data)
        made.append(rel)
    home.symlink("Documents/latest-report.odt", "report-0000.odt")
    return made


def _pictures(home: _Home, count: int, budget: int) -> list[str]:
    made = []
    for i, size in enumerate(home.sizes(count, budget, 1000)):
        rel = f"Pictures/{2021 + i % 3}/IMG_{1000 + i}.jpg"
        home.write(rel, b"\xff\xd8\xff\xe0" + home.noise(size))
        made.append(rel)
    return made


def _project(home: _Home, count: int, budget: int) -> None:
    base = "Projects/webapp"
    home.write(f"{base}/bin/run.sh", b"#!/bin/sh\nexec python3 -m webapp \"$@\"\n", 0o755)
    home.write(f"{base}/.git/HEAD", b"ref: refs/heads/main\n")
    home.write(f"{base}/.git/refs/heads/main", home.noise(20).hex().encode() + b"\n")
    sources = count // 2
    for i, size in enumerate(home.sizes(count - 3, budget, 30)):
        if i < sources:
            rel = f"{base}/src/module_{i % 17}/part_{i}.py"
            home.write(rel, b'"""Module."""\n\n' + home.text(size).replace(b".", b"()\n"))
        else:
            digest = hashlib.sha1(b"%d-%d" % (i, size)).hexdigest()
            home.write(f"{base}/.git/objects/{digest[:2]}/{digest[2:]}", zlib.compress(home.text(size)), 0o444)
    pack = home.write(f"{base}/.git/objects/pack/pack-1.pack", home.noise(max(1000, budget // 50)), 0o444)
    clone = home.root / "Projects/webapp-clone/.git/objects/pack/pack-1.pack"
    clone.parent.mkdir(parents=True, exist_ok=True)
    os.link(pack, clone)  # what `git clone --local` does


def _duplicates(home: _Home, count: int, candidates: list[str]) -> None:
    for i, rel in enumerate(home.rng.sample(candidates, min(count, len(candidates)))):
        src = home.root / rel
        dest = f"Documents/Phone backup/{i:03d} {src.name}"
        home.write(dest, src.read_bytes())


def _junk(home: _Home, count: int, budget: int) -> None:
    home.write(".cache/CACHEDIR.TAG", CACHEDIR_TAG)
    sizes = home.sizes(count, budget, 10)
    for i, size in enumerate(sizes):
        if i % 3 == 0:
            home.write(f".local/share/Trash/files/old-{i}.txt", home.text(size))
            home.write(f".local/share/Trash/info/old-{i}.txt.trashinfo",
                       b"[Trash Info]\nPath=/home/joe/old-%d.txt\n" % i)
        else:
            home.write(f".cache/thumbnails/large/{i:05d}.png", home.noise(size))


def mutate_home(root: Path, seed: int) -> str:
    """Change a home made by make_home as a day of work would: modify three files,
    add two, delete one, rename one (deterministic for a seed); return what was done."""
    home = _Home(root, seed + 1_000_003)
    candidates = sorted(
        p.relative_to(home.root).as_posix() for p in home.root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1
        and not any(p.relative_to(home.root).as_posix().startswith(e + "/") for e in HOME_EXCLUDED)
        and "/.git/" not in p.as_posix() and os.access(p, os.W_OK))
    picked = home.rng.sample(candidates, 5)
    for rel in picked[:3]:
        path = home.root / rel
        data = bytearray(path.read_bytes())
        if rel.endswith((".txt", ".md", ".py", ".conf")) or not data:
            data += b"\nedited on day %d\n" % seed
        else:
            offset = home.rng.randrange(len(data))
            data[offset:offset + 64] = home.noise(64)[: len(data) - offset]
        path.write_bytes(bytes(data))
        t = home.mtime(later=True)
        os.utime(path, ns=(t, t))
    added = [_fresh(home, f"Documents/notes day {seed}.txt"), _fresh(home, f"Pictures/new/IMG_day{seed}.jpg")]
    home.write(added[0], home.text(3000), later=True)
    home.write(added[1], b"\xff\xd8\xff\xe0" + home.noise(200_000), later=True)
    (home.root / picked[3]).unlink()
    renamed = _fresh(home, f"Documents/Archive/{Path(picked[4]).name}")
    (home.root / renamed).parent.mkdir(parents=True, exist_ok=True)
    os.rename(home.root / picked[4], home.root / renamed)
    return (f"modified {', '.join(picked[:3])}; added {', '.join(added)}; "
            f"deleted {picked[3]}; renamed {picked[4]} -> {renamed}")


def _fresh(home: _Home, rel: str) -> str:
    """Return rel, or rel with a number added, whichever does not exist yet."""
    candidate, n = rel, 1
    while (home.root / candidate).exists():
        stem, dot, ext = rel.rpartition(".")
        candidate = f"{stem} ({n}).{ext}" if dot else f"{rel} ({n})"
        n += 1
    return candidate
