"""One session, whatever front end carried it: who a login is (a machine key, a restore
or template grant, a former key, a password), what its command may run (dispatch), and
running it over the session's byte streams: homesync RPC or the server's own `borg
serve`. The SSH front end (endpoint.py, paramiko) is a thin adapter over this module;
nothing here knows paramiko.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Protocol

from homesync import names, protocol
from homesync.errors import HomesyncError, ProtocolError
from homesync.transport import exact_reader
from homesync_server import borgrpc, borgserve, dispatch, handlers, index_damage, revocation, stale_locks
from homesync_server.dispatch import MACHINE, REFUSED, RESTORE, TEMPLATE, Principal
from homesync_server.services import Services

logger = logging.getLogger(__name__)
REFUSAL_GRACE = 1.0
# A template session is read only by the RPC filter (borgrpc); the smallest quota borg
# accepts stays as a second layer, should a write ever get past the filter.
TEMPLATE_QUOTA = "10M"
RPC_IDLE_TIMEOUT = 600.0


class Channel(Protocol):
    """A session's byte streams as a front end hands them over. When the peer is gone,
    every method raises OSError or EOFError (a timeout is an OSError)."""

    closed: bool

    def recv(self, size: int) -> bytes: ...

    def recv_ready(self) -> bool: ...

    def sendall(self, data: bytes) -> None: ...

    def sendall_stderr(self, data: bytes) -> None: ...

    def send_exit_status(self, status: int) -> None: ...

    def settimeout(self, seconds: float | None) -> None: ...

    def shutdown_write(self) -> None: ...

    def close(self) -> None: ...

    def open_window(self) -> None:
        """Let the client send as much as borg serve's throughput needs (until now, little)."""


def by_key(services: Services, username: str, key_type: str, key_base64: str) -> tuple[Principal, str] | None:
    """Given the user name a client logged in as and the public key it proved it holds,
    return who it is and the key as "type base64": a machine, a restore or template
    grant, or a former key of a machine (a session with no rights, which tells the old
    computer why); None if the key opens nothing."""
    if not names.is_machine_id(username) or key_type != "ssh-ed25519":
        return None
    offered = f"{key_type} {key_base64}"
    machine = services.index.machine(username)
    if machine and machine["state"] == "active" and secrets.compare_digest(machine["public_key"].encode(),
                                                                           offered.encode()):
        return Principal(MACHINE, machine["owner"], machine_id=username), offered
    grant = services.grants.find(offered, username)
    if grant and grant.template:
        return Principal(TEMPLATE, grant.user, template_id=username), offered
    if grant:
        return Principal(RESTORE, grant.user, machine_id=username), offered
    revoked = services.index.revoked_key(username, offered)
    if revoked:
        return Principal(REFUSED, machine["owner"], machine_id=username, error=revocation.error(revoked)), offered
    return None


def still_allowed(services: Services, principal: Principal, key: str | None, touch: bool) -> bool:
    """Return whether the login of a live connection still stands: the machine active,
    owned by the same user, with the same key; the restore grant not ended (touch: mark
    it as in use)."""
    if principal.kind == MACHINE:
        machine = services.index.machine(principal.machine_id)
        return bool(machine and machine["state"] == "active" and machine["owner"] == principal.user
                    and machine["public_key"] == key)
    if principal.kind in (RESTORE, TEMPLATE):
        repository = principal.template_id or principal.machine_id
        return services.grants.still_granted(key, repository, principal.user, touch)
    return True


def refuse(channel: Channel, error: HomesyncError, rpc: bool = True) -> None:
    """Tell the client why its command is refused (on stderr, and as an RPC failure when
    it speaks RPC), then close the channel."""
    try:
        channel.sendall_stderr(protocol.cause_line(error))
        if rpc:
            channel.sendall(protocol.encode_frame(protocol.failure(error)))
        channel.send_exit_status(1)
        channel.shutdown_write()
        # Closing at once could overtake the front end's reply to the exec request, and
        # the client would see "channel closed" instead of the reason: give the client a
        # moment to close first, reading (and dropping) what it sends meanwhile.
        deadline = time.monotonic() + REFUSAL_GRACE
        channel.settimeout(REFUSAL_GRACE)
        while time.monotonic() < deadline and channel.recv(4096):
            pass
    except (OSError, EOFError):
        pass
    finally:
        channel.close()


def run(services: Services, principal: Principal, source: str, channel: Channel,
        action: dispatch.BorgServe | dispatch.TemplateServe | dispatch.Rpc) -> None:
    """Run what dispatch decided, over channel, until either side ends."""
    try:
        if isinstance(action, dispatch.Rpc):
            _run_rpc(services, principal, source, channel)
        else:
            _run_borg(services, principal, source, channel, action)
    except index_damage.UNUSABLE as e:  # before borg serve started (its session's audit or record)
        refuse(channel, index_damage.refused(e, "every session"), rpc=False)


def _run_borg(services: Services, principal: Principal, source: str, channel: Channel,
              action: dispatch.BorgServe | dispatch.TemplateServe) -> None:
    if isinstance(action, dispatch.TemplateServe):
        services.index.audit("repository_open", principal.user, None, source,
                             purpose="template restore", template=action.template_id)
        repository, quota, may_write = services.layout.template(action.template_id), TEMPLATE_QUOTA, False
    else:
        if principal.kind == RESTORE:
            services.index.audit("repository_open", principal.user, action.machine_id, source, purpose="restore")
        repository, quota, may_write = (services.layout.repo(action.machine_id), services.config.storage_quota,
                                        action.may_write)
    stale_locks.break_if_dead(services, repository, getattr(action, "machine_id", None))
    started = time.time()
    # Sessions that may write are checked against the index afterwards; recorded before they write.
    watch = services.session_checks if may_write else None
    if watch:
        watch.session_opened(action.machine_id, started)
    try:
        channel.open_window()
        rc = borgserve.serve(services, repository, channel, may_write, quota,
                             _audit_refusal(services, principal, source, action))
        channel.send_exit_status(rc)
    except (OSError, EOFError):
        pass
    finally:
        channel.close()
        if watch:
            watch.session_ended(action.machine_id, started, time.time())


def _audit_refusal(services: Services, principal: Principal, source: str,
                   action: dispatch.BorgServe | dispatch.TemplateServe):
    """Return what logs and audits a borg call the session's filter refused."""
    def refused(refusal: borgrpc.Refusal) -> None:
        logger.warning("refused borg call %s for %s from %s: %s", refusal.method, principal.describe(), source,
                       refusal.reason)
        template = {"template": action.template_id} if isinstance(action, dispatch.TemplateServe) else {}
        services.index.audit("borg_call_refused", principal.user, getattr(action, "machine_id", None), source,
                             method=refusal.method, reason=refusal.reason, session=principal.kind, **template)
    return refused


def _run_rpc(services: Services, principal: Principal, source: str, channel: Channel) -> None:
    """Answer RPC frames until the client closes, goes quiet for RPC_IDLE_TIMEOUT, or
    breaks the protocol (told why, then closed)."""
    channel.settimeout(RPC_IDLE_TIMEOUT)
    read_exactly = exact_reader(channel)
    try:
        while True:
            try:
                op, args = protocol.check_request(protocol.read_frame(read_exactly))
                response = protocol.ok(handlers.handle(services, principal, op, args, source))
            except EOFError:
                break
            except index_damage.UNUSABLE as e:
                response = protocol.failure(index_damage.refused(e, "every session"))
            except HomesyncError as e:
                response = protocol.failure(e)
                if isinstance(e, ProtocolError):
                    channel.sendall(protocol.encode_frame(response))
                    break
            except Exception:
                logger.exception("RPC handler failed for %s", principal.describe())
                response = protocol.failure(HomesyncError("internal server error; the admin can see the log"))
            channel.sendall(protocol.encode_frame(response))
    except (OSError, EOFError):
        pass
    finally:
        channel.close()
