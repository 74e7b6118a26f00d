"""homesync's SSH shim, the BORG_RSH borg runs: `python -m homesync.shim [-p PORT]
USER@HOST borg serve …`. It connects with paramiko, checks the pinned host key, logs
in with the key named in the environment, and pumps borg's protocol both ways.
"""

from __future__ import annotations

import os
import selectors
import shlex
import sys
import threading
import time
from pathlib import Path

from homesync import borg, protocol, transport
from homesync.errors import ConnectionFailedError, HomesyncError

ENV_FINGERPRINT = "HOMESYNC_SHIM_FINGERPRINT"
ENV_KEY_FILE = "HOMESYNC_SHIM_KEY_FILE"
ENV_SILENCE = "HOMESYNC_SHIM_SILENCE"  # seconds the server may stay silent while borg waits for it
DEFAULT_SILENCE = 120.0
CHUNK = 256 * 1024  # reads from pipes
# paramiko's channel buffer copies what stays buffered on every recv(): take all of it at
# once (bench/: a 300 MB restore went from 9–13 s to 6–7 s, the shim's CPU from 5 s to 1 s).
RECV = transport.WINDOW


def rsh_command() -> str:
    """Return the BORG_RSH value that runs this shim with the current Python."""
    return f"{shlex.quote(sys.executable)} -m homesync.shim"


def parse_argv(argv: list[str]) -> tuple[str, str, str]:
    """Given the shim's argv ([-p PORT] USER@HOST COMMAND…), return (user, address, command)."""
    port = "22"
    if len(argv) >= 2 and argv[0] == "-p":
        port, argv = argv[1], argv[2:]
    if not argv or "@" not in argv[0]:
        raise HomesyncError("homesync shim: expected USER@HOST")
    user, _, host = argv[0].rpartition("@")
    host = f"[{host}]" if ":" in host else host
    return user, f"{host}:{port}", shlex.join(argv[1:])


def pump(channel, stdin_fd: int, stdout_fd: int, stderr_fd: int, silence: float = DEFAULT_SILENCE,
         address: str = "the backup server") -> int:
    """Copy stdin to the channel and the channel's output to stdout/stderr until the
    remote command ends; return its exit status. The process ends (exit 2, the reason
    told) when the server says nothing for `silence` seconds while borg waits for it."""
    sel = selectors.DefaultSelector()
    sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
    sel.register(channel, selectors.EVENT_READ, "channel")
    stdin_open = True
    watch = Silence(silence, address)
    causes = Causes()
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                data = os.read(stdin_fd, CHUNK)
                if data:
                    watch.sent()
                    channel.sendall(data)
                else:
                    stdin_open = False
                    sel.unregister(stdin_fd)
                    channel.shutdown_write()
                continue
            watch.heard()  # the server said something (data, EOF or its exit status)
            while channel.recv_stderr_ready():
                _write_all(stderr_fd, causes.feed(channel.recv_stderr(RECV)))
            if channel.recv_ready():
                data = channel.recv(RECV)
                if data:
                    _write_all(stdout_fd, data)
                    continue
            if channel.exit_status_ready() or channel.closed or channel.eof_received:
                while channel.recv_stderr_ready():
                    _write_all(stderr_fd, causes.feed(channel.recv_stderr(RECV)))
                while True:
                    data = channel.recv(RECV)
                    if not data:
                        break
                    _write_all(stdout_fd, data)
                if stdin_open:
                    sel.unregister(stdin_fd)
                status = channel.recv_exit_status()
                if status == -1:  # closed with no exit status: the server went away (stopped, restarted)
                    _fail(_closed(address))
                    return LOST
                return status


LOST = 255  # the exit status ssh gives a lost connection


def _closed(address: str) -> ConnectionFailedError:
    return ConnectionFailedError(f"the backup server at {address} closed the connection (it stopped or restarted)",
                                 "nothing was lost; try again once it answers (a backup continues from where "
                                 "this one stopped, a restore from the phase it stopped in)")


class Causes:
    """Watches the server's stderr for a line naming the cause of a failure and leaves it
    for the borg call (borg itself would report only its own last words)."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> bytes:
        """Take the next stderr bytes; tell the cause any complete line names; return data."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-4096:]
        for line in lines:
            error = protocol.parse_cause(line)
            if error is not None:
                borg.tell_shim_error(error)
        return data


class Silence:
    """Ends the shim when the server has said nothing for `seconds` while a request of
    borg's waits for it: a stopped or hung server keeps TCP open, and a send into its
    full buffers would block forever, so a thread watches and leaves the process."""

    def __init__(self, seconds: float, address: str) -> None:
        self.seconds, self.address = seconds, address
        self._heard = self._sent = time.monotonic()
        threading.Thread(target=self._watch, daemon=True, name="silence").start()

    def sent(self) -> None:
        self._sent = time.monotonic()

    def heard(self) -> None:
        self._heard = time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.seconds / 4))
            if self._sent > self._heard and time.monotonic() - self._heard > self.seconds:
                error = ConnectionFailedError(f"the backup server at {self.address} stopped answering "
                                              f"(nothing for {self.seconds:.0f} s)",
                                              "try again later; tell your admin if it lasts")
                _fail(error)
                os._exit(2)


def _fail(error: HomesyncError) -> None:
    """Say why the shim gives up: one line on stderr, and to the borg call that ran it."""
    print(f"homesync: {error.line()}", file=sys.stderr, flush=True)
    borg.tell_shim_error(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str] | None = None) -> int:
    """Run the shim; return the remote command's exit status."""
    try:
        user, address, command = parse_argv(list(sys.argv[1:] if argv is None else argv))
        pinned = os.environ[ENV_FINGERPRINT]
        key = transport.load_key(Path(os.environ[ENV_KEY_FILE]))
        silence = float(os.environ.get(ENV_SILENCE) or DEFAULT_SILENCE)
        with transport.Session.connect(address, pinned, user, key=key) as session:
            channel = session.exec(command)
            try:
                return pump(channel, sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno(), silence, address)
            except BrokenPipeError:  # borg itself went first (it stopped at an error the server sent it)
                return LOST
            except (EOFError, OSError):  # the connection went while borg's data was on its way
                _fail(_closed(address))
                return LOST
    except KeyError as e:
        print(f"homesync shim: {e.args[0]} is not set", file=sys.stderr)
        return 2
    except HomesyncError as e:
        _fail(e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
