"""Running `borg serve` for one SSH channel: the server's own argv, confined to one
repository, the client's calls filtered by what the session may do (borgrpc), its
answers and errors scrubbed of the server's paths and argv (borgerrors), and the whole
process group ended when the channel closes so no repository stays locked.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from homesync import borg, execute, protocol
from homesync.errors import DiskFullError, HomesyncError
from homesync.transport import WINDOW
from homesync_server import borgcauses, borgrpc, reserve
from homesync_server.borgerrors import ReplyStream, Scrubber
from homesync_server.services import Services

if TYPE_CHECKING:
    from homesync_server.session import Channel

logger = logging.getLogger(__name__)
CHUNK = 256 * 1024  # reads from borg's pipes
RECV = WINDOW  # drain the channel's buffer at once (paramiko's): each recv copies what stays in it
REFUSED_RC = 2
REFUSED_LINGER = 10.0  # seconds the client has to read a refusal and close
MAX_LATER_CALLS = 10_000


class FilteredSession:
    """One borg serve process behind a policy: client bytes reach its stdin a whole,
    allowed message at a time (the exact bytes), and its answers are read as messages
    only until the repository is open (and, for a writer, its existing ids are known)."""

    def __init__(self, policy: borgrpc.Policy, stdin, on_refused: Callable[[borgrpc.Refusal], None]) -> None:
        self.policy = policy
        self.stdin = stdin
        self.on_refused = on_refused
        self.requests = borgrpc.Splitter()
        self.responses = borgrpc.Splitter()
        self.snapshot: borgrpc.Snapshot | None = None
        self.refusal: borgrpc.Refusal | None = None
        self.opened = threading.Event()  # the open was answered (and the snapshot is complete)
        self.raw_responses = False
        self._lock = threading.Lock()
        self._snapshot_started = 0.0

    def write(self, views) -> None:
        """Write bytes to borg serve's stdin."""
        with self._lock:
            for view in views:
                view = memoryview(view)
                while view:
                    view = view[self.stdin.write(view):]

    def from_client(self, data: bytes) -> bool:
        """Forward the allowed whole messages in data (and what came before); return
        False once a call was refused (nothing after it is forwarded)."""
        self.requests.feed(data)
        while True:
            start = self.requests.boundary
            try:
                message = self.requests.next_message()
            except borgrpc.FrameError as e:
                return self._refuse(start, borgrpc.Refusal(None, "?", str(e)))
            if message is None:
                break
            decision = self.policy.decide(message)
            if isinstance(decision, borgrpc.Refusal):
                return self._refuse(start, decision)
            if decision[0] == borgrpc.SNAPSHOT:
                self.write(self.requests.take(self.requests.boundary))
                self.opened.wait()  # client calls are held until the ids are known
        self.write(self.requests.take(self.requests.boundary))
        return True

    def later_calls(self, data: bytes) -> list[int]:
        """After a refusal: return the msgids of the whole calls in data (never forwarded)."""
        self.requests.feed(data)
        msgids = []
        try:
            while (message := self.requests.next_message()) is not None and len(msgids) < MAX_LATER_CALLS:
                msgid = borgrpc.msgid_of(message)
                if isinstance(msgid, int):
                    msgids.append(msgid)
        except borgrpc.FrameError:
            pass
        self.requests.take(self.requests.boundary)
        return msgids

    def _refuse(self, start: int, refusal: borgrpc.Refusal) -> bool:
        self.write(self.requests.take(start))
        self.refusal = refusal
        try:
            self.on_refused(refusal)
        except Exception:  # the audit failing must not keep the session alive
            logger.exception("could not record the refused %s call", refusal.method)
        return False

    def from_server(self, data: bytes) -> list[memoryview]:
        """Given borg serve's output, return what goes to the client (the filter's own
        answers taken out)."""
        self.responses.feed(data)
        out: list[memoryview] = []
        while not self.raw_responses:
            start = self.responses.boundary
            try:
                message = self.responses.next_message()
            except borgrpc.FrameError:
                self._open_done()
                break
            if message is None:
                break
            msgid = borgrpc.msgid_of(message)
            if self.snapshot and msgid == self.snapshot.msgid:
                out += self.responses.take(start)
                self.responses.take(self.responses.boundary)
                self._snapshot_answer(message)
            elif msgid is not None and msgid == self.policy.open_msgid:
                out += self.responses.take(self.responses.boundary)
                if self.policy.snapshot_wanted and not (isinstance(message, dict) and b"exception_class" in message):
                    self._snapshot_started = time.monotonic()
                    self.snapshot = borgrpc.Snapshot()
                    self.write([self.snapshot.request()])
                else:
                    self._open_done()
        out += self.responses.take(self.responses.boundary)
        if self.raw_responses:
            out += self.responses.rest()
        return out

    def _snapshot_answer(self, message) -> None:
        try:
            following = self.snapshot.answer(message)
        except borgrpc.FrameError as e:
            logger.warning("could not list the repository's objects (%s): this session may not write", e)
            self._open_done()
            return
        if following:
            self.write([following])
            return
        ids = self.snapshot.ids
        self.policy.existing = ids
        logger.info("learned %d object ids in %.3f s (%d KiB)", len(ids),
                    time.monotonic() - self._snapshot_started, ids.nbytes() // 1024)
        self._open_done()

    def _open_done(self) -> None:
        self.raw_responses = True
        self.opened.set()


def serve(services: Services, repository: Path, channel: Channel, may_write: bool,
          storage_quota: str = "", on_refused: Callable[[borgrpc.Refusal], None] = lambda r: None) -> int:
    """Run borg serve for one repository (a machine's or a template's) over channel until
    either side ends, letting through only the calls the session may make (may_write:
    an agent session, which may add); return the exit code sent to the client."""
    argv = borg.make_serve_command(repository, storage_quota)
    env = services.repos.environment().build()
    # cwd = the repository's parent, so the client's "ssh://…/./<id>" resolves to it.
    process = execute.spawn(argv, env=env, cwd=str(repository.parent))
    session = FilteredSession(borgrpc.Policy(writer=may_write), process.stdin, on_refused)
    served = threading.Event()  # borg serve's answers are all with the client
    scrubber = Scrubber(repository, services.layout.data)
    teller = _CauseTeller(channel, repository)
    replies = ReplyStream(scrubber, teller.seen)
    pumps = [threading.Thread(target=_channel_to_stdin, args=(channel, process, session, served), daemon=True),
             threading.Thread(target=_stdout_to_channel, args=(process.stdout, channel, session,
                                                               replies.feed), daemon=True),
             threading.Thread(target=_stream_to_channel, args=(process.stderr, channel.sendall_stderr,
                                                               scrubber.lines), daemon=True)]
    for pump in pumps:
        pump.start()
    pumps[1].join()  # borg serve closed its stdout: it is ending
    rc = execute.stop_group(process, grace=10.0)
    pumps[2].join(timeout=5)
    served.set()
    if session.refusal:
        pumps[0].join(timeout=REFUSED_LINGER + 5)  # the client reads the refusal and closes
        rc = REFUSED_RC
    if may_write and isinstance(teller.error, DiskFullError):
        reserve.reclaim(repository)  # what the session left unfinished would wedge the repository
    if rc < 0:  # killed: SSH's exit status is unsigned, so say it the shell's way (128 + signal)
        logger.warning("borg serve for %s was killed by signal %s", repository.name, -rc)
        return 128 - rc
    logger.info("borg serve for %s ended with rc %s", repository.name, rc)
    return rc


class _CauseTeller:
    """Names the first error of a session users meet (disk full, unreadable files): one
    line in the server's log, and the cause on the client's stderr before borg's reply."""

    def __init__(self, channel: Channel, repository: Path) -> None:
        self.channel, self.repository, self.told = channel, repository, False
        self.error: HomesyncError | None = None  # the first named cause

    def seen(self, reply: dict) -> None:
        error = borgcauses.cause_of(reply)
        if error is None and reply.get(b"exception_trace"):  # a crash: its traceback stays in our log
            full = b"".join(s for s in reply.get(b"exception_full") or [] if isinstance(s, bytes))
            logger.error("borg serve for %s crashed:\n%s", self.repository, full.decode("utf-8", "replace").strip())
        if error is None or self.told:
            return
        self.told, self.error = True, error
        detail = b" ".join(s for s in reply.get(b"exception_short") or [] if isinstance(s, bytes))
        logger.error("borg serve for %s: %s: %s", self.repository, error.message,
                     detail.decode("utf-8", "replace").strip() or reply.get(b"exception_class"))
        try:
            self.channel.sendall_stderr(protocol.cause_line(error))
        except (OSError, EOFError):
            pass


def _channel_to_stdin(channel: Channel, process, session: FilteredSession,
                      served: threading.Event) -> None:
    # The client went away (EOF, reset, keepalive failure) or made a refused call:
    # closing stdin makes borg serve roll back and release its lock; stop_group() makes
    # sure it ends.
    try:
        while True:
            data = channel.recv(RECV)
            if not data:
                break
            if not session.from_client(data):
                process.stdin.close()
                _answer_refused(channel, session, served)
                break
    except (OSError, EOFError, ValueError):
        pass
    finally:
        try:
            process.stdin.close()
        except OSError:
            pass
        if channel.closed:
            threading.Thread(target=execute.stop_group, args=(process, 10.0), daemon=True).start()


def _answer_refused(channel: Channel, session: FilteredSession, served: threading.Event) -> None:
    """Once borg serve's last answer is out, refuse the refused call and every call
    after it, until the client (whose borg stops at the first refusal) closes."""
    pending: list[int] = []
    channel.settimeout(REFUSED_LINGER)
    while not served.wait(timeout=0.05):
        data = channel.recv(RECV) if channel.recv_ready() else b""
        pending += session.later_calls(data)
    channel.sendall_stderr(f"homesync-server: {session.refusal.message()}\n".encode())
    refusal = session.refusal
    for msgid in [refusal.msgid, *pending]:
        if msgid is not None:
            channel.sendall(borgrpc.refusal_frame(borgrpc.Refusal(msgid, refusal.method, refusal.reason)))
    try:
        while data := channel.recv(RECV):
            for msgid in session.later_calls(data):
                channel.sendall(borgrpc.refusal_frame(borgrpc.Refusal(msgid, refusal.method, refusal.reason)))
    except socket.timeout:
        pass


def _stdout_to_channel(stream, channel: Channel, session: FilteredSession,
                       scrub: Callable[[bytes], bytes]) -> None:
    try:
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            if not session.raw_responses:  # the filter's own answers are taken out first
                data = b"".join(bytes(view) for view in session.from_server(data))
            data = scrub(data)
            if data:
                channel.sendall(data)
    except borgrpc.FrameError as e:  # not borg RPC: the session ends rather than pass it on
        logger.error("borg serve's output is not borg RPC (%s): ending the session", e)
    except (OSError, EOFError, ValueError):
        pass
    finally:
        session.opened.set()


def _stream_to_channel(stream, send, scrub: Callable[[bytes], bytes]) -> None:
    try:
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            data = scrub(data)
            if data:
                send(data)
    except (OSError, EOFError):
        pass
