"""What a session may run. Pure: given who logged in and the command their client
asked to execute, return the one action the server will take, never the client's
argv. Kept apart from the SSH front end so an OpenSSH forced command can reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

from homesync import protocol
from homesync.errors import HomesyncError, PermissionDeniedError

USER, MACHINE, RESTORE, TEMPLATE, REFUSED = "user", "machine", "restore", "template", "refused"


@dataclass(frozen=True)
class Principal:
    """Who a session belongs to.

    user: logged in with the user's password; machine: with a machine key;
    restore: with a one-off key granted for one machine's restore;
    template: with a one-off key granted for restoring one template home;
    refused: the directory could not be asked, or logins are throttled; every action
    fails with `error`."""

    kind: str
    user: str
    admin: bool = False
    machine_id: str | None = None
    error: HomesyncError | None = None
    template_id: str | None = None

    def describe(self) -> str:
        """Return who this is, for logs and audit events."""
        if self.template_id:
            return f"{self.user}@template:{self.template_id}"
        return f"{self.user}@{self.machine_id}" if self.machine_id else self.user


@dataclass(frozen=True)
class BorgServe:
    """Run `borg serve` confined to this machine's repository; may_write: an agent
    session, which may add backups (borgrpc.Policy); otherwise it may only read."""

    machine_id: str
    may_write: bool = False


@dataclass(frozen=True)
class TemplateServe:
    """Run `borg serve` confined to this template's repository, read only."""

    template_id: str


@dataclass(frozen=True)
class Rpc:
    """Answer homesync RPC requests."""


def decide(principal: Principal, command: str) -> BorgServe | TemplateServe | Rpc:
    """Given a principal and the command its client asked for, return the action the
    server takes. Raise PermissionDeniedError for anything else."""
    if principal.kind == REFUSED:
        raise principal.error or PermissionDeniedError("this login was refused")
    words = command.split()
    if words == [protocol.RPC_COMMAND]:
        return Rpc()
    if len(words) >= 2 and words[0].rsplit("/", 1)[-1] == "borg" and words[1] == "serve":
        if principal.kind in (MACHINE, RESTORE) and principal.machine_id:
            return BorgServe(principal.machine_id, may_write=principal.kind == MACHINE)
        if principal.kind == TEMPLATE and principal.template_id:
            return TemplateServe(principal.template_id)
        raise PermissionDeniedError("a password login cannot open a repository")
    raise PermissionDeniedError("this server runs only homesync and borg sessions")
