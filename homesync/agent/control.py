"""The agent's status socket: a UNIX socket only its user can reach
($XDG_RUNTIME_DIR/homesync/agent.sock, else $XDG_STATE_HOME/homesync/agent.sock),
answering one JSON line with one JSON line per connection. `homesync status` asks here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from homesync import exits
from homesync.config import Paths
from homesync.errors import HomesyncError

log = logging.getLogger(__name__)

SOCKET_NAME = "agent.sock"
MAX_LINE = 64 * 1024
TIMEOUT = 2.0
_SUN_PATH_MAX = 107  # sockaddr_un holds 108 bytes with the terminating NUL

Answer = Callable[[dict], dict]


class AgentNotRunning(HomesyncError):
    """No agent answered on any of the socket paths."""

    kind = "agent_not_running"
    exit_code = exits.AGENT_NOT_RUNNING


def socket_paths(paths: Paths) -> list[Path]:
    """Return where the socket may be, in order: the runtime directory, then the state directory."""
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        candidates.append(Path(runtime) / "homesync" / SOCKET_NAME)
    candidates.append(paths.state_dir / SOCKET_NAME)
    return candidates


class ControlServer:
    """The listening socket; close() stops it and removes the socket file."""

    def __init__(self, server: asyncio.AbstractServer, path: Path) -> None:
        self.server, self.path = server, path

    @classmethod
    async def start(cls, paths: Paths, answer: Answer) -> ControlServer:
        """Listen on the first socket path that works; raise HomesyncError if none does."""
        problems = []
        for path in socket_paths(paths):
            try:
                return cls(await _listen(path, answer), path)
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                log.info("cannot listen on %s: %s", path, exc)
        raise HomesyncError("cannot create the status socket: " + "; ".join(problems))

    async def close(self) -> None:
        """Stop answering and remove the socket."""
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def _listen(path: Path, answer: Answer) -> asyncio.AbstractServer:
    """Bind the socket in a private directory (0700), make it 0600, and serve answer()."""
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise OSError(f"the path is longer than a UNIX socket allows ({_SUN_PATH_MAX} bytes)")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by an agent that died; the single-instance lock says it is not live

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_one(reader, writer, answer)

    server = await asyncio.start_unix_server(on_connection, path=str(path), limit=MAX_LINE)
    os.chmod(path, 0o600)
    log.info("status socket: %s", path)
    return server


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer) -> None:
    """Read one request line, write one response line, close."""
    try:
        if not _peer_allowed(writer.get_extra_info("socket")):
            response = {"ok": False, "error": "permission denied"}
        else:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            response = _respond(line, answer)
        writer.write(json.dumps(response, default=str).encode() + b"\n")
        await asyncio.wait_for(writer.drain(), TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        log.debug("status request failed: %s", exc)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


def _respond(line: bytes, answer: Answer) -> dict:
    """Return the response to one request line."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            raise ValueError("a request is a JSON object with an \"op\"")
        return {"ok": True, "result": answer(request)}
    except (ValueError, KeyError) as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a bug answering must not take the agent down
        log.exception("status request failed")
        return {"ok": False, "error": f"internal error: {type(exc).__name__}"}


def _peer_allowed(sock: socket.socket | None) -> bool:
    """Return True if the connecting process is this user (or root): the 0700 directory
    already says so; this is the second lock on the door."""
    if sock is None:
        return False
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return False
    return uid in (os.getuid(), 0)


def ask(paths: Paths, op: str = "status", timeout: float = TIMEOUT) -> dict:
    """Send one request to the running agent and return its result; raise AgentNotRunning
    if no agent answers, HomesyncError if it answered with an error."""
    for path in socket_paths(paths):
        try:
            response = _exchange(path, {"op": op}, timeout)
        except (OSError, ValueError) as exc:
            log.debug("no agent at %s: %s", path, exc)
            continue
        if not response.get("ok"):
            raise HomesyncError(f"the agent refused the request: {response.get('error', 'no reason given')}")
        return response["result"]
    raise AgentNotRunning("the homesync agent is not running")


def _exchange(path: Path, request: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks, size = [], 0
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > 16 * MAX_LINE:
                raise ValueError("the answer is too long")
    response = json.loads(b"".join(chunks))
    if not isinstance(response, dict):
        raise ValueError("the answer is not a JSON object")
    return response
