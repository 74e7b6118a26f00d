"""Name the cause of a `borg serve` error the users meet (the server's disk full, files
of the repository it may not read) as a homesync error, so that the client reads one
line saying what happened and what to do instead of borg's last words.
"""

from __future__ import annotations

import errno

from homesync.errors import DiskFullError, HomesyncError, RepositoryUnreadableError

_FULL = ("No space left on device", "Insufficient free space", "Disk quota exceeded")
_DENIED = ("Permission denied", "Operation not permitted")
_FULL_CLASSES = {"InsufficientFreeSpaceError"}
_DENIED_CLASSES = {"PermissionError"}
_QUOTA_CLASSES = {"StorageQuotaExceeded"}  # [server] storage_quota, borg serve --storage-quota


def cause_of(reply: dict) -> HomesyncError | None:
    """Given borg serve's error reply (msgpack, keys as bytes), return the error users
    should read, or None when it is none of the named causes."""
    name = _text(reply.get(b"exception_class"))
    args = reply.get(b"exception_args") or []
    number = args[0] if args and isinstance(args[0], int) else None
    text = " ".join(_text(a) for a in [*args, *(reply.get(b"exception_short") or [])])
    if name in _QUOTA_CLASSES:
        quota, used = (_text(a) for a in (list(args) + ["?", "?"])[:2])
        return DiskFullError(f"this computer's storage quota on the backup server is used up ({used} of {quota})",
                             "nothing was lost; tell your admin to raise [server] storage_quota or prune, "
                             "and the next backup goes through")
    if name in _FULL_CLASSES or number in (errno.ENOSPC, errno.EDQUOT) or any(t in text for t in _FULL):
        return server_disk_full("its repository for this computer")
    if name in _DENIED_CLASSES or number in (errno.EACCES, errno.EPERM) or any(t in text for t in _DENIED):
        return RepositoryUnreadableError(
            "the backup server may not read or write some files of this computer's repository",
            "nothing was changed; tell your admin: files in the repository have another owner or mode "
            "(see the admin guide, \"Repository files the server cannot read\")")
    return None


def server_disk_full(what: str) -> DiskFullError:
    """Return the error of a full disk on the server, naming what could not be written."""
    return DiskFullError(f"the backup server's disk is full ({what} could not be written)",
                         "nothing was lost and the last backups are intact; tell your admin to free space "
                         "on the server, then back up again")


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)
