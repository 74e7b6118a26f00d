"""The SSH front end (paramiko): one port, many sessions. A thin adapter: paramiko's
authentication callbacks and channels handed to session.py, which decides who a login
is and what its command may run, and runs it over the channel's streams.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import paramiko

from homesync import protocol
from homesync.errors import HomesyncError, IndexUnavailableError
from homesync_server import channels, dispatch, index_damage, session
from homesync_server.dispatch import REFUSED, Principal
from homesync_server.services import Services
from homesync_server.sessions import SessionSlots, WaitingRoom

logger = logging.getLogger(__name__)
logging.getLogger("paramiko").setLevel(logging.WARNING)
HANDSHAKE_TIMEOUT = 20.0
ACCEPT_POLL = 0.5  # seconds: how soon the main thread runs a signal's handler at the latest
# Channels one connection may hold open at once (beyond those, opening one is refused);
# a refused login (directory down) needs only the one that tells it why.
MAX_CHANNELS = 10
RECHECK_SECONDS = 1.0  # how soon a revoked key's, grant's or machine's session is closed
TOUCH_SECONDS = 60.0  # how often a live restore session marks its grant as in use
# How long a live session outlasts an index database that stopped answering. No login can
# be revoked in a database that does not answer (revoking writes to it), so the last
# answer stands for a while: a backup running when PostgreSQL restarts or fails over
# completes (its report waits in the agent's queue) instead of being cut within a
# second. Bounded, because one node cut off from a database the others still reach
# would not see a revocation made through them.
UNAVAILABLE_GRACE = 300.0


class Authenticator(paramiko.ServerInterface):
    """Decides who a connection is (session.by_key, the password logins); remembers the
    principal for its channels."""

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
        try:
            found = session.by_key(self.services, username, key.get_name(), key.get_base64())
        except index_damage.UNUSABLE as e:  # a session with no rights, so that the client is told why
            found = Principal(REFUSED, "", machine_id=username, error=index_damage.refused(e, "every session")), None
        if found is None:
            return paramiko.AUTH_FAILED
        self.principal, self.key = found
        return paramiko.AUTH_SUCCESSFUL

    def check_auth_password(self, username: str, password: str) -> int:
        # A throttled login, or one the directory could not check, gets a session with no
        # rights, so that the client can be told why (SSH can only say yes or no).
        try:
            principal = self.services.logins.check(username, password, self.source)
        except index_damage.UNUSABLE as e:
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
        streams = _Streams(channel)
        try:
            action = dispatch.decide(self.principal, text)
            self.slots.take(login)
        except HomesyncError as e:
            logger.info("refused %r for %s from %s: %s", text[:80], self.principal.describe(), self.source, e)
            rpc = text.split() == [protocol.RPC_COMMAND]  # borg reads no RPC frame: the cause is on stderr
            threading.Thread(target=session.refuse, args=(streams, e, rpc), daemon=True).start()
            return True
        threading.Thread(target=self._run, args=(streams, action, login), daemon=True,
                         name=f"session-{self.principal.describe()}").start()
        return True

    def _run(self, streams: "_Streams", action, login: str) -> None:
        try:
            session.run(self.services, self.principal, self.source, streams, action)
        finally:
            self.slots.give_back(login)

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


class _Streams:
    """A paramiko channel as session.Channel: paramiko's own errors become EOFError, and
    borg serve gets the large window (channels.open_window)."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel

    @property
    def closed(self) -> bool:
        return self._channel.closed

    def recv(self, size: int) -> bytes:
        try:
            return self._channel.recv(size)
        except paramiko.SSHException as e:
            raise EOFError(str(e)) from None

    def recv_ready(self) -> bool:
        return self._channel.recv_ready()

    def sendall(self, data: bytes) -> None:
        try:
            self._channel.sendall(data)
        except paramiko.SSHException as e:
            raise EOFError(str(e)) from None

    def sendall_stderr(self, data: bytes) -> None:
        try:
            self._channel.sendall_stderr(data)
        except paramiko.SSHException as e:
            raise EOFError(str(e)) from None

    def send_exit_status(self, status: int) -> None:
        try:
            self._channel.send_exit_status(status)
        except paramiko.SSHException as e:
            raise EOFError(str(e)) from None

    def settimeout(self, seconds: float | None) -> None:
        self._channel.settimeout(seconds)

    def shutdown_write(self) -> None:
        self._channel.shutdown_write()

    def close(self) -> None:
        self._channel.close()

    def open_window(self) -> None:
        channels.open_window(self._channel)


class Endpoint:
    """The listening SSH server."""

    def __init__(self, services: Services, host_key: paramiko.PKey, host: str, port: int) -> None:
        self.services = services
        self.host_key = host_key
        self.sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                         reuse_port=False, backlog=64)
        self.address = self.sock.getsockname()[:2]
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self.slots = SessionSlots(services.config.limits)
        self.waiting = WaitingRoom(services.config.limits)

    def serve_forever(self) -> None:
        """Accept connections until stop() is called."""
        threading.Thread(target=self._close_overdue, daemon=True, name="login-deadlines").start()
        # accept wakes up every ACCEPT_POLL seconds: a signal that the kernel gives to
        # another thread does not interrupt it, and Python runs its handler (the drain)
        # only in the main thread, between two calls
        self.sock.settimeout(ACCEPT_POLL)
        while not self._stopping.is_set() and not self._draining.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set() or self._draining.is_set():
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
        unanswered_since: float | None = None  # since when the index has not answered
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
                allowed = session.still_allowed(self.services, auth.principal, auth.key,
                                                touch=now - touched >= TOUCH_SECONDS)
                unanswered_since = None
            except IndexUnavailableError as e:
                index_damage.refused(e, "new sessions")
                unanswered_since = now if unanswered_since is None else unanswered_since
                if now - unanswered_since < UNAVAILABLE_GRACE:
                    continue  # the login's last answer stands (see UNAVAILABLE_GRACE)
                logger.info("closing the session of %s from %s: the index has not answered for %.0f s",
                            auth.principal.describe(), auth.source, now - unanswered_since)
                return
            except index_damage.UNUSABLE as e:  # a revocation can no longer be seen: the session ends
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

    def drain(self) -> None:
        """Stop accepting connections and sessions (a client's next attempt goes to
        another node); the running sessions go on. serve_forever returns."""
        self._draining.set()
        self.slots.close()
        self._close_listener()

    def _close_listener(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def stop(self) -> None:
        """Stop accepting, close every connection (their borg serve processes end)."""
        self._stopping.set()
        self.slots.close()
        self._close_listener()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
