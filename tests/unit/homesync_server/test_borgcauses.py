"""borg serve's error replies the users meet are named: disk full, files the server may not read."""

from __future__ import annotations

from homesync.errors import DiskFullError, RepositoryUnreadableError
from homesync_server.borgcauses import cause_of


def _reply(cls: str, args: list, short: str) -> dict:
    return {b"exception_class": cls.encode(), b"exception_args": args, b"exception_short": [short.encode()],
            b"exception_trace": True}


def test_a_full_disk_and_unreadable_files_are_named_and_other_errors_are_not():
    assert isinstance(cause_of(_reply("OSError", [28, b"No space left on device"], "OSError: [Errno 28] …")),
                      DiskFullError)
    assert isinstance(cause_of(_reply("InsufficientFreeSpaceError", [b"10", b"5"], "Insufficient free space")),
                      DiskFullError)
    assert isinstance(cause_of(_reply("PermissionError", [13, b"Permission denied"], "PermissionError: …")),
                      RepositoryUnreadableError)
    assert cause_of(_reply("IntegrityError", [b"segment 3"], "Data integrity error: segment 3")) is None
    assert cause_of({b"exception_class": b"Whatever"}) is None


def test_a_storage_quota_used_up_is_named_with_its_figures():
    error = cause_of(_reply("StorageQuotaExceeded", ["10.00 MB", "10.37 MB"],
                            "The storage quota (10.00 MB) has been exceeded (10.37 MB). Try deleting some archives."))
    assert isinstance(error, DiskFullError)
    assert error.message == "this computer's storage quota on the backup server is used up (10.37 MB of 10.00 MB)"
    assert "storage_quota" in error.hint
