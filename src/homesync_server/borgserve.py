"""Running `borg serve` for one SSH channel: the server's own argv, confined to one
repository, its pipes pumped to and from the channel (its errors scrubbed of the
server's paths and argv), and the whole process group ended when the channel closes
so no repository stays locked.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import paramiko

from homesync import borg, execute
from homesync.transport import WINDOW
from homesync_server.borgerrors import ReplyStream, Scrubber
from homesync_server.services import Services

logger = logging.getLogger(__name__)
CHUNK = 256 * 1024  # reads from borg's pipes
RECV = WINDOW  # drain paramiko's channel buffer at once: each recv copies what stays in it


def serve(services: Services, repository: Path, channel: paramiko.Channel, storage_quota: str = "") -> int:
    """Run borg serve for one repository (a machine's or a template's) over channel until
    either side ends; return its exit code (sent to the client as the exit status)."""
    argv = borg.make_serve_command(repository, storage_quota)
    env = borg.BorgEnvironment(base_dir=services.layout.borg_home).build()
    # cwd = the repository's parent, so the client's "ssh://…/./<id>" resolves to it.
    process = execute.spawn(argv, env=env, cwd=str(repository.parent))
    scrubber = Scrubber(repository, services.layout.data)
    pumps = [threading.Thread(target=_channel_to_stdin, args=(channel, process), daemon=True),
             threading.Thread(target=_stream_to_channel, args=(process.stdout, channel.sendall,
                                                               ReplyStream(scrubber).feed), daemon=True),
             threading.Thread(target=_stream_to_channel, args=(process.stderr, channel.sendall_stderr,
                                                               scrubber.lines), daemon=True)]
    for pump in pumps:
        pump.start()
    pumps[1].join()  # borg serve closed its stdout: it is ending
    rc = execute.stop_group(process, grace=10.0)
    pumps[2].join(timeout=5)
    logger.info("borg serve for %s ended with rc %s", repository.name, rc)
    return rc


def _channel_to_stdin(channel: paramiko.Channel, process) -> None:
    # The client went away (EOF, reset, keepalive failure): closing stdin makes borg
    # serve roll back and release its lock; stop_group() makes sure it ends.
    try:
        while True:
            data = channel.recv(RECV)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[process.stdin.write(view):]
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        try:
            process.stdin.close()
        except OSError:
            pass
        if channel.closed:
            threading.Thread(target=execute.stop_group, args=(process, 10.0), daemon=True).start()


def _stream_to_channel(stream, send, scrub) -> None:
    try:
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            data = scrub(data)
            if data:
                send(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
