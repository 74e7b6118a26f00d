"""The SSH front end (paramiko): one port, many sessions. It authenticates machine
keys, restore keys (for a machine or a template) and user passwords, asks dispatch
what a session may run, and runs it: homesync RPC or the server's own `borg serve`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import paramiko

from homesync import names, protocol
from homesync.transport import exact_reader
from homesync.errors import HomesyncError, IndexDamagedError, ProtocolError
from homesync_server import borgrpc, borgserve, channels, dispatch, handlers, index_damage, revocation
from homesync_server.dispatch import MACHINE, REFUSED, RESTORE, TEMPLATE, Principal
from homesync_server.services import Services
from homesync_server.sessions import SessionSlots, WaitingRoom

logger = logging.getLogger(__name__)
logging.getLogger("paramiko").setLevel(logging.WARNING)
HANDSHAKE_TIMEOUT = 20.0
# Channels one connection may hold open at once (beyond those, opening one is refused);
# a refused login (directory down) needs only the one that tells it why.
MAX_CHANNELS = 10
RECHECK_SECONDS = 1.0  # how soon a revoked key's, grant's or machine's session is closed
TOUCH_SECONDS = 60.0  # how often a live restore session marks its grant as in use
REFUSAL_GRACE = 1.0
# A template session is read only by the RPC filter (borgrpc); the smallest quota borg
# accepts stays as a second layer, should a write ever get past the filter.
TEMPLATE_QUOTA = "10M"
RPC_IDLE_TIMEOUT = 600.0


class Authenticator(paramiko.ServerInterface):
    """Decides who a connection is; remembers the principal for its channels."""

    def __init__(self, services: Services, source: str, slots: SessionSlots) -> None:
        self.services = services
        self.source = source
        self.slots = slots
        self.principal: Principal | None = None
        self.key: str | None = None  # the public key it logged in with
        self.channels: set[int] = set()  # the ids of its open channels
        self._ran: set[int] = set()  # the ids of the channels that ran their one command
        self._lock = threading.Lock()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if not names.is_machine_id(username) or key.get_name() != "ssh-ed25519":
            return paramiko.AUTH_FAILED
        try:
            return self._check_key(username, f"{key.get_name()} {key.get_base64()}")
        except IndexDamagedError as e:  # a session with no rights, so that the client is told why
            self.principal = Principal(REFUSED, "", machine_id=username,
                                       error=index_damage.refused(e, "every session"))
            return paramiko.AUTH_SUCCESSFUL

    def _check_key(self, username: str, offered: str) -> int:
        machine = self.services.index.machine(username)
        if machine and machine["state"] == "active" and paramiko.util.constant_time_bytes_eq(
                machine["public_key"].encode(), offered.encode()):
            self.principal, self.key = Principal(MACHINE, machine["owner"], machine_id=username), offered
            return paramiko.AUTH_SUCCESSFUL
        grant = self.services.grants.find(offered, username)
        if grant and grant.template:
            self.principal, self.key = Principal(TEMPLATE, grant.user, template_id=username), offered
            return paramiko.AUTH_SUCCESSFUL
        if grant:
            self.principal, self.key = Principal(RESTORE, grant.user, machine_id=username), offered
            return paramiko.AUTH_SUCCESSFUL
        revoked = self.services.index.revoked_key(username, offered)
        if revoked:  # a session with no rights, so that the old computer can be told why
            self.principal = Principal(REFUSED, machine["owner"], machine_id=username,
                                       error=revocation.error(revoked))
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        # A throttled login, or one the directory could not check, gets a session with no
        # rights, so that the client can be told why (SSH can only say yes or no).
        try:
            principal = self.services.logins.check(username, password, self.source)
        except IndexDamagedError as e:
            principal = Principal(REFUSED, "", error=index_damage.refused(e, "every session"))
        if principal is None:
            return paramiko.AUTH_FAILED
        self.principal = principal
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        most = MAX_CHANNELS if self.logged_in() else 1
        with self._lock:
            if kind == "session" and self.principal and len(self.channels) < most:
                self.channels.add(chanid)
                return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes | str) -> bool:
        if channel.chanid in self._ran:
            return False  # one command per channel: a second one is refused outright
        self._ran.add(channel.chanid)
        text = command.decode("utf-8", "replace") if isinstance(command, bytes) else command
        login = f"{self.principal.kind}:{self.principal.describe()}"
        try:
            action = dispatch.decide(self.principal, text)
            self.slots.take(login)
        except HomesyncError as e:
            logger.info("refused %r for %s from %s: %s", text[:80], self.principal.describe(), self.source, e)
            rpc = text.split() == [protocol.RPC_COMMAND]  # borg reads no RPC frame: the cause is on stderr
            threading.Thread(target=_refuse, args=(channel, e, rpc), daemon=True).start()
            return True
        threading.Thread(target=_run_session, args=(self, channel, action, login), daemon=True,
                         name=f"session-{self.principal.describe()}").start()
        return True

    def forget(self, closed: list[paramiko.Channel]) -> None:
        """Forget channels that closed (they no longer count against MAX_CHANNELS)."""
        with self._lock:
            self.channels -= {c.chanid for c in closed}

    def logged_in(self) -> bool:
        """Return whether the connection logged in (a refused login did not)."""
        return self.principal is not None and self.principal.kind != REFUSED

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return False

    def check_channel_pty_request(self, *args) -> bool:
        return False

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return False


def _refuse(channel: paramiko.Channel, error: HomesyncError, rpc: bool = True) -> None:
    try:
        channel.sendall_stderr(protocol.cause_line(error))
        if rpc:
            channel.sendall(protocol.encode_frame(protocol.failure(error)))
        channel.send_exit_status(1)
        channel.shutdown_write()
        # Closing at once could overtake paramiko's reply to the exec request, and the
        # client would see "channel closed" instead of the reason: give the client a
        # moment to close first, reading (and dropping) what it sends meanwhile.
        deadline = time.monotonic() + REFUSAL_GRACE
        channel.settimeout(REFUSAL_GRACE)
        while time.monotonic() < deadline and channel.recv(4096):
            pass
    except (OSError, EOFError, paramiko.SSHException, socket.timeout):
        pass
    finally:
        channel.close()


def _run_session(auth: Authenticator, channel: paramiko.Channel, action, login: str) -> None:
    try:
        if isinstance(action, dispatch.Rpc):
            _run_rpc(auth, channel, action)
        else:
            _run_borg(auth, channel, action)
    except IndexDamagedError as e:  # before borg serve started (its session's audit or record)
        _refuse(channel, index_damage.refused(e, "every session"), rpc=False)
    finally:
        auth.slots.give_back(login)


def _run_borg(auth: Authenticator, channel: paramiko.Channel,
              action: dispatch.BorgServe | dispatch.TemplateServe) -> None:
    services = auth.services
    if isinstance(action, dispatch.TemplateServe):
        services.index.audit("repository_open", auth.principal.user, None, auth.source,
                             purpose="template restore", template=action.template_id)
        repository, quota, may_write = services.layout.template(action.template_id), TEMPLATE_QUOTA, False
    else:
        if auth.principal.kind == RESTORE:
            services.index.audit("repository_open", auth.principal.user, action.machine_id, auth.source,
                                 purpose="restore")
        repository, quota, may_write = (services.layout.repo(action.machine_id), services.config.storage_quota,
                                        action.may_write)
    started = time.time()
    # Sessions that may write are checked against the index afterwards; recorded before they write.
    watch = services.session_checks if may_write else None
    if watch:
        watch.session_opened(action.machine_id, started)
    try:
        channels.open_window(channel)
        rc = borgserve.serve(services, repository, channel, may_write, quota, _audit_refusal(auth, action))
        channel.send_exit_status(rc)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        channel.close()
        if watch:
            watch.session_ended(action.machine_id, started, time.time())


def _audit_refusal(auth: Authenticator, action: dispatch.BorgServe | dispatch.TemplateServe):
    """Return what logs and audits a borg call the session's filter refused."""
    def refused(refusal: borgrpc.Refusal) -> None:
        who = auth.principal.describe()
        logger.warning("refused borg call %s for %s from %s: %s", refusal.method, who, auth.source, refusal.reason)
        template = {"template": action.template_id} if isinstance(action, dispatch.TemplateServe) else {}
        auth.services.index.audit("borg_call_refused", auth.principal.user, getattr(action, "machine_id", None),
                                  auth.source, method=refusal.method, reason=refusal.reason,
                                  session=auth.principal.kind, **template)
    return refused


def _run_rpc(auth: Authenticator, channel: paramiko.Channel, action: dispatch.Rpc) -> None:
    channel.settimeout(RPC_IDLE_TIMEOUT)
    read_exactly = exact_reader(channel)
    try:
        while True:
            try:
                op, args = protocol.check_request(protocol.read_frame(read_exactly))
                response = protocol.ok(handlers.handle(auth.services, auth.principal, op, args, auth.source))
            except EOFError:
                break
            except IndexDamagedError as e:
                response = protocol.failure(index_damage.refused(e, "every session"))
            except HomesyncError as e:
                response = protocol.failure(e)
                if isinstance(e, ProtocolError):
                    channel.sendall(protocol.encode_frame(response))
                    break
            except Exception:
                logger.exception("RPC handler failed for %s", auth.principal.describe())
                response = protocol.failure(HomesyncError("internal server error; the admin can see the log"))
            channel.sendall(protocol.encode_frame(response))
    except (OSError, EOFError, paramiko.SSHException, socket.timeout):
        pass
    finally:
        channel.close()


def _still_allowed(services: Services, auth: Authenticator, touch: bool) -> bool:
    """Return whether the login of a live connection still stands: the machine active,
    owned by the same user, with the same key; the restore grant not ended."""
    principal = auth.principal
    if principal.kind == MACHINE:
        machine = services.index.machine(principal.machine_id)
        return bool(machine and machine["state"] == "active" and machine["owner"] == principal.user
                    and machine["public_key"] == auth.key)
    if principal.kind in (RESTORE, TEMPLATE):
        repository = principal.template_id or principal.machine_id
        return services.grants.still_granted(auth.key, repository, principal.user, touch)
    return True


class Endpoint:
    """The listening SSH server."""

    def __init__(self, services: Services, host_key: paramiko.PKey, host: str, port: int) -> None:
        self.services = services
        self.host_key = host_key
        self.sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                         reuse_port=False, backlog=64)
        self.address = self.sock.getsockname()[:2]
        self._stopping = threading.Event()
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self.slots = SessionSlots(services.config.limits)
        self.waiting = WaitingRoom(services.config.limits)

    def serve_forever(self) -> None:
        """Accept connections until stop() is called."""
        threading.Thread(target=self._close_overdue, daemon=True, name="login-deadlines").start()
        while not self._stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            threading.Thread(target=self._connection, args=(conn, peer[0]), daemon=True).start()

    def _connection(self, conn: socket.socket, source: str) -> None:
        transport = channels.BoundedTransport(conn)
        transport.add_server_key(self.host_key)
        transport.set_keepalive(self.services.config.keepalive_seconds)
        transport.banner_timeout = HANDSHAKE_TIMEOUT
        transport.auth_timeout = HANDSHAKE_TIMEOUT
        with self._lock:
            self._transports.add(transport)
        for crowded in self.waiting.enter(transport, source):
            logger.info("closing a connection that has not logged in, to make room for one from %s", source)
            crowded.close()
        auth = Authenticator(self.services, source, self.slots)
        try:
            transport.start_server(server=auth)
            self._hold(transport, auth)
        except (paramiko.SSHException, OSError, EOFError) as e:
            logger.debug("connection from %s ended: %s", source, e)
        finally:
            self.waiting.leave(transport)
            transport.close()
            with self._lock:
                self._transports.discard(transport)

    def _hold(self, transport: paramiko.Transport, auth: Authenticator) -> None:
        """Accept the connection's channels while it lasts; end it as soon as its login is
        revoked (a machine adopted, retired or transferred, a grant ended)."""
        # paramiko closes a Channel when its last reference goes: hold the open ones.
        held: list[paramiko.Channel] = []
        checked = touched = time.monotonic()
        while transport.is_active() and not self._stopping.is_set():
            channel = transport.accept(timeout=RECHECK_SECONDS)
            if auth.logged_in():
                self.waiting.leave(transport)  # a refused login stays there, with its deadline
            auth.forget([c for c in held if c.closed])
            held = [c for c in held if not c.closed] + ([channel] if channel else [])
            now = time.monotonic()
            if not auth.logged_in() or now - checked < RECHECK_SECONDS:
                continue
            checked = now
            try:
                allowed = _still_allowed(self.services, auth, touch=now - touched >= TOUCH_SECONDS)
            except IndexDamagedError as e:  # a revocation can no longer be seen: the session ends
                index_damage.refused(e, "every session")
                logger.info("closing the session of %s from %s: the index cannot say whether its login stands",
                            auth.principal.describe(), auth.source)
                return
            if not allowed:
                logger.info("closing the session of %s from %s: its login was revoked",
                            auth.principal.describe(), auth.source)
                return
            touched = touched if now - touched < TOUCH_SECONDS else now

    def _close_overdue(self) -> None:
        """Close connections that did not log in by their deadline (a refused login included)."""
        while not self._stopping.wait(0.25):
            for transport in self.waiting.overdue():
                auth = transport.server_object
                if not (isinstance(auth, Authenticator) and auth.logged_in()):
                    logger.info("closing a connection that did not log in in time")
                    transport.close()

    def stop(self) -> None:
        """Stop accepting, close every connection (their borg serve processes end)."""
        self._stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
