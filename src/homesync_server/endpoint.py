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
from homesync.errors import (AuthenticationError, HomesyncError, IdentityUnavailableError, ProtocolError)
from homesync_server import borgserve, dispatch, handlers
from homesync_server.dispatch import MACHINE, REFUSED, RESTORE, TEMPLATE, USER, Principal
from homesync_server.services import Services

logger = logging.getLogger(__name__)
logging.getLogger("paramiko").setLevel(logging.WARNING)
WINDOW = 64 * 1024 * 1024
MAX_PACKET = 256 * 1024
HANDSHAKE_TIMEOUT = 20.0
# borg 1.4's serve has no read-only mode: a template session gets the smallest quota borg
# accepts, so that (once a template holds that much) a restoring user cannot write to it.
TEMPLATE_QUOTA = "10M"
RPC_IDLE_TIMEOUT = 600.0


class Authenticator(paramiko.ServerInterface):
    """Decides who a connection is; remembers the principal for its channels."""

    def __init__(self, services: Services, source: str) -> None:
        self.services = services
        self.source = source
        self.principal: Principal | None = None
        self.server: "Endpoint | None" = None
        self.transport: paramiko.Transport | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if not names.is_machine_id(username) or key.get_name() != "ssh-ed25519":
            return paramiko.AUTH_FAILED
        offered = f"{key.get_name()} {key.get_base64()}"
        machine = self.services.index.machine(username)
        if machine and machine["state"] == "active" and paramiko.util.constant_time_bytes_eq(
                machine["public_key"].encode(), offered.encode()):
            self.principal = Principal(MACHINE, machine["owner"], machine_id=username)
            return paramiko.AUTH_SUCCESSFUL
        grant = self.services.grants.find(offered, username)
        if grant and grant.template:
            self.principal = Principal(TEMPLATE, grant.user, template_id=username)
            return paramiko.AUTH_SUCCESSFUL
        if grant:
            self.principal = Principal(RESTORE, grant.user, machine_id=username)
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        limiter, index = self.services.limiter, self.services.index
        try:
            username = names.user_name(username)
        except HomesyncError:
            return paramiko.AUTH_FAILED
        if limiter.blocked(username, self.source):
            index.audit("login_failed", username, source=self.source, reason="rate limited")
            return paramiko.AUTH_FAILED
        try:
            person = self.services.identity.authenticate(username, password)
        except AuthenticationError:
            limiter.failed(username, self.source)
            index.audit("login_failed", username, source=self.source, reason="wrong user name or password")
            return paramiko.AUTH_FAILED
        except IdentityUnavailableError as e:
            # Let the session in with no rights, so the client can be told why.
            logger.warning("directory unavailable: %s", e.message)
            self.principal = Principal(REFUSED, username, error=e)
            return paramiko.AUTH_SUCCESSFUL
        limiter.succeeded(username, self.source)
        self.principal = Principal(USER, person.name, admin=person.admin)
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session" and self.principal:
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes | str) -> bool:
        text = command.decode("utf-8", "replace") if isinstance(command, bytes) else command
        try:
            action = dispatch.decide(self.principal, text)
        except HomesyncError as e:
            logger.info("refused %r for %s from %s: %s", text[:80], self.principal.describe(), self.source, e)
            threading.Thread(target=_refuse, args=(channel, e), daemon=True).start()
            return True
        target = _run_rpc if isinstance(action, dispatch.Rpc) else _run_borg
        threading.Thread(target=target, args=(self, channel, action), daemon=True,
                         name=f"session-{self.principal.describe()}").start()
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return False

    def check_channel_pty_request(self, *args) -> bool:
        return False

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return False


def _refuse(channel: paramiko.Channel, error: HomesyncError) -> None:
    try:
        channel.sendall_stderr(f"homesync-server: {error.line()}\n".encode())
        channel.sendall(protocol.encode_frame(protocol.failure(error)))
        channel.send_exit_status(1)
        # Closing now could overtake paramiko's reply to the exec request, and the client
        # would see "channel closed" instead of the reason: let the client close first.
        channel.settimeout(10)
        while channel.recv(4096):
            pass
    except (OSError, EOFError, paramiko.SSHException, socket.timeout):
        pass
    finally:
        channel.close()


def _run_borg(auth: Authenticator, channel: paramiko.Channel,
              action: dispatch.BorgServe | dispatch.TemplateServe) -> None:
    services = auth.services
    if isinstance(action, dispatch.TemplateServe):
        services.index.audit("repository_open", auth.principal.user, None, auth.source,
                             purpose="template restore", template=action.template_id)
        repository, quota = services.layout.template(action.template_id), TEMPLATE_QUOTA
    else:
        if auth.principal.kind == RESTORE:
            services.index.audit("repository_open", auth.principal.user, action.machine_id, auth.source,
                                 purpose="restore")
        repository, quota = services.layout.repo(action.machine_id), services.config.storage_quota
    started = time.time()
    try:
        rc = borgserve.serve(services, repository, channel, quota)
        channel.send_exit_status(rc)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        channel.close()
        # The repository is checked against the index after every session that could write to it.
        if isinstance(action, dispatch.BorgServe) and services.on_session_end:
            services.on_session_end(action.machine_id, started, time.time())


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

    def serve_forever(self) -> None:
        """Accept connections until stop() is called."""
        while not self._stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            threading.Thread(target=self._connection, args=(conn, peer[0]), daemon=True).start()

    def _connection(self, conn: socket.socket, source: str) -> None:
        transport = paramiko.Transport(conn, default_window_size=WINDOW, default_max_packet_size=MAX_PACKET)
        transport.add_server_key(self.host_key)
        transport.set_keepalive(self.services.config.keepalive_seconds)
        transport.banner_timeout = HANDSHAKE_TIMEOUT
        transport.auth_timeout = HANDSHAKE_TIMEOUT
        with self._lock:
            self._transports.add(transport)
        try:
            transport.start_server(server=Authenticator(self.services, source))
            # paramiko closes a Channel when its last reference goes: hold the open ones.
            channels: list[paramiko.Channel] = []
            while transport.is_active() and not self._stopping.is_set():
                channel = transport.accept(timeout=1.0)
                channels = [c for c in channels if not c.closed] + ([channel] if channel else [])
        except (paramiko.SSHException, OSError, EOFError) as e:
            logger.debug("connection from %s ended: %s", source, e)
        finally:
            transport.close()
            with self._lock:
                self._transports.discard(transport)

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
