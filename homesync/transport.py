"""The one place the agent talks SSH (paramiko): connect to the backup server, check
its host key against the pinned fingerprint, authenticate with the machine key or
the user's password, and open exec channels (homesync RPC, borg protocol).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import os
import select
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from paramiko.common import cMSG_DISCONNECT
from cryptography.hazmat.primitives.asymmetric import ed25519

from homesync import protocol
from homesync.errors import (AuthenticationError, ConnectionFailedError, HostKeyMismatchError,
                             ProtocolError, UsageError)

logger = logging.getLogger(__name__)
logging.getLogger("paramiko").setLevel(logging.WARNING)

CONNECT_TIMEOUT = 10.0
# A name with several addresses (A and AAAA records): each gets this long to accept the
# TCP connection before the next is tried (a lost SYN is resent after 1 s; 3 s covers it).
ADDRESS_TIMEOUT = 3.0
RPC_TIMEOUT = 120.0
WINDOW = 64 * 1024 * 1024
MAX_PACKET = 256 * 1024
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
DISCONNECT_BY_APPLICATION = 11  # RFC 4253, 11.1
LOGIN_FAILED = "login failed: wrong user name or password"


def fingerprint(key: paramiko.PKey) -> str:
    """Given a public key, return its OpenSSH SHA256 fingerprint ("SHA256:…")."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_address(text: str, default_port: int = 2222) -> tuple[str, int]:
    """Given "HOST:PORT" (or "[v6]:PORT", or HOST alone), return (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid server address {text!r}", "write it as HOST:PORT")
    return host.strip("[]"), int(port)


def resolve(address: str) -> list[str]:
    """Given "HOST:PORT", return every address HOST resolves to (its A and AAAA records,
    in the resolver's order, each once) as "IP:PORT" or "[IP]:PORT"; [] if it does not
    resolve. An IP address gives itself."""
    host, port = parse_address(address)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found: list[str] = []
    for family, _, _, _, sockaddr in infos:
        text = f"[{sockaddr[0]}]:{port}" if family == socket.AF_INET6 else f"{sockaddr[0]}:{port}"
        if text not in found:
            found.append(text)
    return found


_answered: dict[str, str] = {}  # a name's address that accepted last, in this process: tried first next time


def open_socket(address: str, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """Return a TCP connection to address. A name with several addresses is tried address
    by address, ADDRESS_TIMEOUT each (the one that accepted last in this process first),
    so that one dead address costs seconds, not the whole timeout. Raise
    ConnectionFailedError naming what was tried."""
    host, port = parse_address(address)
    found = resolve(address)
    if len(found) < 2:
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ConnectionFailedError(f"cannot reach the backup server at {address}: {e.strerror or e}",
                                        "check the address and that homesync-server is running") from None
    found.sort(key=lambda a: a != _answered.get(address))
    failures = []
    for candidate in found:
        try:
            sock = socket.create_connection(parse_address(candidate), timeout=min(timeout, ADDRESS_TIMEOUT))
        except OSError as e:
            failures.append(f"{candidate} {'did not answer' if isinstance(e, TimeoutError) else e.strerror or e}")
            continue
        sock.settimeout(timeout)
        _answered[address] = candidate
        return sock
    raise ConnectionFailedError(f"cannot reach the backup server at {address}: {'; '.join(failures)}",
                                "check the address and that homesync-server is running")


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key: paramiko's object for SSH, and its OpenSSH private text for saving
    (paramiko cannot write Ed25519 private keys itself)."""

    pkey: paramiko.PKey
    pem: str

    def save(self, path: Path) -> None:
        """Write the private key to path, mode 0600 from the first byte; never overwrite."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.pem)


def new_key() -> KeyPair:
    """Return a new Ed25519 key (machine identity, host key, or a restore's one-off key)."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    return KeyPair(paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), pem)


def public_key_line(key: paramiko.PKey) -> str:
    """Return a key's public half as one OpenSSH line ("ssh-ed25519 AAAA…")."""
    return f"{key.get_name()} {key.get_base64()}"


def load_key(path: Path) -> paramiko.PKey:
    """Load a private key file written by KeyPair.save."""
    return paramiko.Ed25519Key.from_private_key_file(str(path))


class Session:
    """An authenticated SSH connection to the backup server."""

    def __init__(self, transport: paramiko.Transport, address: str) -> None:
        self.transport = transport
        self.address = address

    @classmethod
    def connect(cls, address: str, pinned: str, user: str, *, key: paramiko.PKey | None = None,
                password: str | None = None, timeout: float = CONNECT_TIMEOUT) -> "Session":
        """Connect to address, verify the host key against the pinned fingerprint, and
        log in as user with the key or the password. Raise ConnectionFailedError,
        HostKeyMismatchError or AuthenticationError."""
        sock = open_socket(address, timeout)
        transport = paramiko.Transport(sock, default_window_size=WINDOW, default_max_packet_size=MAX_PACKET)
        try:
            return cls._handshake(transport, address, pinned, user, key, password, timeout)
        except BaseException:
            transport.close()
            raise

    @classmethod
    def _handshake(cls, transport, address, pinned, user, key, password, timeout) -> "Session":
        options = transport.get_security_options()
        options.ciphers = [c for c in PREFERRED_CIPHERS if c in options.ciphers] or options.ciphers
        options.key_types = ["ssh-ed25519"]
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectionFailedError(f"SSH handshake with {address} failed: {e}",
                                        "is this a homesync server?") from None
        if not transport.is_active() or transport.host_key is None:  # start_client gives up silently
            raise ConnectionFailedError(f"the backup server at {address} did not answer within {timeout:.0f} s",
                                        "try again later; tell your admin if it lasts")
        seen = fingerprint(transport.get_remote_server_key())
        if not hmac.compare_digest(seen.encode(), pinned.encode()):
            raise HostKeyMismatchError(
                f"the server at {address} presented host key {seen}, not the pinned {pinned}",
                "nothing was sent; if the server was reinstalled, get its new fingerprint from your admin")
        try:
            if key is not None:
                transport.auth_publickey(user, key)
            elif password:
                transport.auth_password(user, password, fallback=False)
            else:
                raise AuthenticationError("an empty password is refused")
        except paramiko.AuthenticationException:
            if key is not None:
                raise AuthenticationError(
                    "the server refused this computer's key",
                    "it may have been replaced or retired; run `homesync enroll` again") from None
            raise AuthenticationError(LOGIN_FAILED) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectionFailedError(f"connection to {address} lost while logging in: {e}") from None
        transport.set_keepalive(30)
        return cls(transport, address)

    def exec(self, command: str, timeout: float | None = None) -> paramiko.Channel:
        """Open a channel running command on the server."""
        try:
            channel = self.transport.open_session(timeout=CONNECT_TIMEOUT)
            channel.settimeout(timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectionFailedError(f"the server at {self.address} closed the session: {e}") from None
        return channel

    def rpc(self) -> "RpcClient":
        """Return an RPC client on a new channel."""
        return RpcClient(self.exec(protocol.RPC_COMMAND, timeout=RPC_TIMEOUT), self.address)

    def close(self) -> None:
        """End the connection as SSH expects, with a disconnect message: closing the socket
        alone makes the server's next read a "connection reset by peer"."""
        say_goodbye(self.transport)
        self.transport.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def say_goodbye(transport: paramiko.Transport) -> None:
    """Send SSH_MSG_DISCONNECT (by application) when it cannot block: the socket has room
    (a hung server's full buffers must not hang the close)."""
    if not transport.is_active():
        return
    try:
        if not select.select([], [transport.sock], [], 0)[1]:
            return
        message = paramiko.Message()
        message.add_byte(cMSG_DISCONNECT)
        message.add_int(DISCONNECT_BY_APPLICATION)
        message.add_string("done")
        message.add_string("")
        transport._send_message(message)  # paramiko has no public call for it
    except (OSError, EOFError, ValueError, paramiko.SSHException):
        pass


class RpcClient:
    """Calls homesync RPC operations over one channel, one at a time."""

    def __init__(self, channel: paramiko.Channel, address: str) -> None:
        self.channel = channel
        self.address = address

    def call(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; raise the error the server sent."""
        try:
            self.channel.sendall(protocol.encode_frame(protocol.request(op, args)))
            response = protocol.read_frame(exact_reader(self.channel))
        except EOFError:
            raise ConnectionFailedError(f"the server at {self.address} closed the connection") from None
        except socket.timeout:
            raise ConnectionFailedError(f"the server at {self.address} did not answer in time") from None
        except OSError as e:
            raise ConnectionFailedError(f"connection to {self.address} lost: {e}") from None
        return protocol.unwrap(response)


def exact_reader(channel: paramiko.Channel):
    """Return a function reading exactly n bytes from channel (b"" at a clean end of
    stream; ProtocolError when the stream ends inside a frame), for protocol.read_frame."""

    def read_exactly(n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = channel.recv(min(n - got, 1 << 16))
            if not chunk:
                if got:
                    raise ProtocolError("connection closed inside a frame")
                return b""
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    return read_exactly
