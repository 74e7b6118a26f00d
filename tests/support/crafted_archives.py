"""Hostile archives for the drill's attack tests: a tar built here is appended to a
machine's repository by borg import-tar run as the server's user, with import-tar's
path normalisation switched off (and optionally an item's size understated), the way
a client speaking borg's protocol can store any item it likes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from homesync_server.escrow import EscrowKey
from homesync_server.repos import SEALED_PASSPHRASE
from tests.support.homesync_server import RunningServer
from tests.support.processes import VENV_BIN, chown_tree, run_as_user

# Run as the server's user: borg import-tar keeping each tar member's name as written,
# and recording size 1 for a member whose name ends with ".lie".
_IMPORT = r'''
import contextlib, sys
from borg import archive, archiver
from borg.item import Item
from borg.helpers import safe_ns

@contextlib.contextmanager
def create_helper(self, tarinfo, status=None, type=None):
    item = Item(path=tarinfo.name, mode=tarinfo.mode | type, uid=tarinfo.uid, gid=tarinfo.gid,
                user=tarinfo.uname or None, group=tarinfo.gname or None,
                mtime=safe_ns(int(tarinfo.mtime * 1000**3)))
    yield item, status
    if tarinfo.name.endswith(".lie"):
        item.size = 1
    self.add_item(item, stats=self.stats)

archive.TarfileObjectProcessors.create_helper = create_helper
sys.argv = ["borg", "import-tar", sys.argv[1], sys.argv[2]]
sys.exit(archiver.main())
'''


def member(name: str, kind: bytes, *, data: bytes = b"", target: str = "", size: int | None = None,
           mode: int = 0o644) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    """Return one tar member: kind is tarfile.DIRTYPE, SYMTYPE, CHRTYPE or REGTYPE."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, 1_700_000_000, target
    info.devmajor, info.devminor = 1, 3  # a character device is /dev/null (0:0 is a whiteout anyone may make)
    if kind == tarfile.REGTYPE:
        info.size = len(data) if size is None else size
        return info, io.BytesIO(data) if size is None else _Zeros(size)
    return info, None


class _Zeros(io.RawIOBase):
    """size zero bytes, read without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def append_archive(server: RunningServer, machine_id: str, name: str, members: list, work: Path) -> None:
    """Write members to a tar under work and append it to the machine's repository as
    archive name, newer than every archive in it."""
    tar_path = work / f"{name}.tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, data)
    chown_tree(work)
    repo = server.data / "repos" / machine_id
    passphrase = EscrowKey.load(server.data / "escrow.key").unseal((repo / SEALED_PASSPHRASE).read_bytes(),
                                                                    machine_id)
    done = run_as_user([str(VENV_BIN / "python"), "-c", _IMPORT, f"{repo}::{name}", str(tar_path)],
                       server.data.parent, BORG_PASSPHRASE=passphrase.decode(), TZ="UTC",
                       BORG_BASE_DIR=str(server.data.parent / "test-borg"), BORG_EXIT_CODES="modern")
    assert done.returncode == 0, done.stderr
    tar_path.unlink()
