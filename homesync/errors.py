"""One exception hierarchy for homesync and homesync-server.

Each error has a stable `kind` (it crosses the RPC wire) and an exit code; the CLI
turns any HomesyncError into one line on stderr and that exit code.
"""

from __future__ import annotations


class HomesyncError(Exception):
    """Base of every error a user is meant to read."""

    kind = "error"
    exit_code = 1
    # Which executables can end with it: an error only ever sent to a client's session
    # is the client's alone, one about the server's own files the server's alone. Each
    # executable's exit-code table (exits.py) holds the codes of the errors it shows.
    shown_by: tuple[str, ...] = ("homesync", "homesync-server")

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """Return the one line the CLI prints: what went wrong, then what to do."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(HomesyncError):
    kind = "usage"
    exit_code = 2


class InvalidNameError(UsageError):
    kind = "invalid_name"


class ConfigError(HomesyncError):
    kind = "config"
    exit_code = 3


class NotEnrolledError(ConfigError):
    kind = "not_enrolled"


class ConflictError(HomesyncError):
    kind = "conflict"
    exit_code = 4


class NotFoundError(HomesyncError):
    kind = "not_found"
    exit_code = 10


class RepositoryLockedError(HomesyncError):
    kind = "locked"
    exit_code = 11


class AuthenticationError(HomesyncError):
    kind = "auth"
    exit_code = 12


class PermissionDeniedError(HomesyncError):
    kind = "denied"
    shown_by = ("homesync",)  # only ever sent to a client's session
    exit_code = 12


class HostKeyMismatchError(HomesyncError):
    kind = "host_key"
    exit_code = 13


class ConnectionFailedError(HomesyncError):
    kind = "connection"
    exit_code = 14


class ServerBusyError(ConnectionFailedError):
    """The server (or this login) already runs as many sessions as it may; try later."""

    kind = "busy"
    shown_by = ("homesync",)  # only ever sent to a client's session


class ProtocolError(HomesyncError):
    kind = "protocol"
    exit_code = 15


class IdentityUnavailableError(HomesyncError):
    """The directory (LDAP) cannot be reached; distinct from a wrong password."""

    kind = "identity_unavailable"
    exit_code = 16


class TooManyLoginsError(HomesyncError):
    """Password logins for this account (or from this address) are blocked for a while;
    distinct from a wrong password, so that a right one is never called wrong."""

    kind = "too_many_logins"
    shown_by = ("homesync",)  # only ever sent to a client's session
    exit_code = 17


class IndexDamagedError(HomesyncError):
    """The server's index file is not a readable SQLite database (overwritten, torn)."""

    kind = "index_damaged"
    exit_code = 19


class ServerIndexDamagedError(HomesyncError):
    """What a client is told while the server's index is damaged under a running `serve`:
    nothing to do on the computer, the server's admin rebuilds the index."""

    kind = "server_index_damaged"
    shown_by = ("homesync",)  # only ever sent to a client's session
    exit_code = 32


class IndexUnavailableError(HomesyncError):
    """The server's index database (PostgreSQL) does not answer: nothing was written,
    and the server reconnects by itself once it is back."""

    kind = "index_unavailable"
    exit_code = 33


class JobRunningError(HomesyncError):
    """A job that runs once at a time (the drills, a mass-change assessment) holds its
    lease in the index on another node, or in another process (issue 14)."""

    kind = "job_running"
    exit_code = 34
    shown_by = ("homesync-server",)


class MachineRevokedError(AuthenticationError):
    """The server refused this computer's key for a reason it names (replaced by an
    adopt, or retired): permanent, so the agent stops retrying. Each has its own code."""

    kind = "machine_revoked"
    exit_code = 18


class MachineReplacedError(MachineRevokedError):
    """Another computer adopted this machine (`restore --adopt`): its key replaced this one's."""

    kind = "machine_replaced"
    shown_by = ("homesync",)  # only ever sent to a client's session


class MachineRetiredError(MachineRevokedError):
    """An admin retired this machine."""

    kind = "machine_retired"
    shown_by = ("homesync",)  # only ever sent to a client's session
    exit_code = 24


class BorgError(HomesyncError):
    kind = "borg"
    exit_code = 20


class BorgCacheError(BorgError):
    """borg crashed in its local cache (damaged or half-deleted files under the cache)."""

    kind = "borg_cache"


class ArchiveMissingError(BorgError):
    """borg was asked for an archive the repository does not hold."""

    kind = "archive_missing"


class DiskFullError(HomesyncError):
    """No space left: on the backup server (its repository or index) or on this computer."""

    kind = "disk_full"
    exit_code = 25


class RepositoryUnreadableError(HomesyncError):
    """The server cannot read (or write) files of the repository: their owner or mode was changed."""

    kind = "repository_unreadable"
    exit_code = 23


class RestoreError(HomesyncError):
    kind = "restore"
    exit_code = 21


class OutputError(HomesyncError):
    """A file the command was asked to write (--output) cannot be written."""

    kind = "output"
    shown_by = ("homesync-server",)
    exit_code = 22


class InvalidPolicyError(ConfigError):
    """A fleet policy file the server refuses (every problem named in one line); nothing stored."""

    kind = "policy_invalid"


class PolicyChangedError(HomesyncError):
    """The fleet policy got a new version while it was being edited (`policy edit`)."""

    kind = "policy_changed"
    shown_by = ("homesync-server",)
    exit_code = 28


class SetupChoiceError(UsageError):
    """`homesync setup` was given flags that make no single choice (two choices, --as
    without --clone or --template, no choice and no terminal to ask on)."""

    kind = "setup_choice"
    exit_code = 29


class NotSetUpError(NotEnrolledError):
    """This computer is not set up yet, and the image's site configuration says where
    the server is: `homesync setup` is the next step."""

    kind = "not_set_up"
    exit_code = 30


class Cancelled(HomesyncError):
    kind = "cancelled"
    exit_code = 130


def _all_kinds() -> dict[str, type[HomesyncError]]:
    kinds: dict[str, type[HomesyncError]] = {}
    todo: list[type[HomesyncError]] = [HomesyncError]
    while todo:
        cls = todo.pop()
        kinds.setdefault(cls.kind, cls)
        todo.extend(cls.__subclasses__())
    return kinds


def from_wire(kind: str, message: str) -> HomesyncError:
    """Given an error kind and message received over RPC, return the local exception."""
    cls = _all_kinds().get(kind, HomesyncError)
    return cls(message)
