"""The post-session checks of `serve`: one background thread checks one repository at a
time, never holding up the end of the SSH session that asked for it. A session ending
while its repository is being checked queues one more check; the window of sessions not
yet checked is kept in the index from the moment a session opens, so a restart (even
after a kill in the middle of a session) checks them first. Stopping stops the running
check's borg too (a check only reads; it stays pending), so a node's stop is bounded by
its drain, not by a check waiting for a repository lock.
"""

from __future__ import annotations

import logging
import threading
import time

from homesync import execute
from homesync.errors import Cancelled
from homesync_server import index_damage, memory, repository_check
from homesync_server.services import Services

logger = logging.getLogger(__name__)


class SessionChecks:
    """A queue of machines whose repositories want checking, and the thread that does it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._queue: list[str] = []
        self._changed = threading.Condition()
        self._stopping = False
        self._busy = False
        self._borg: execute.Running | None = None  # the running check's borg, to stop it
        self._thread = threading.Thread(target=self._run, name="session-checks", daemon=True)

    def start(self) -> None:
        """Queue the checks a previous run left pending, and start the thread."""
        self.services.index.sessions_ended_by(time.time())
        for machine_id in self.services.index.pending_checks():
            self.submit(machine_id)
        self._thread.start()

    def session_opened(self, machine_id: str, started: float) -> None:
        """Remember, before it can write, that a borg session of machine_id began at started."""
        self.services.index.session_opened(machine_id, started)

    def session_ended(self, machine_id: str, started: float, ended: float) -> None:
        """Remember that a borg session of machine_id ran from started to ended, and queue its check."""
        try:
            self.services.index.note_session(machine_id, started, ended)
        except index_damage.UNUSABLE as e:
            index_damage.refused(e, "every session")
        except Exception:
            logger.exception("could not record the session of %s for its check", machine_id)
        self.submit(machine_id)

    def submit(self, machine_id: str) -> None:
        """Queue one check of machine_id (one queued check covers every session before it)."""
        with self._changed:
            if machine_id not in self._queue:
                self._queue.append(machine_id)
                self._changed.notify()

    def idle(self) -> bool:
        """Return whether no check is queued or running."""
        with self._changed:
            return not self._queue and not self._busy

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the running check's borg and wait for the thread (up to timeout seconds);
        the running and the queued checks stay pending for the next start."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
            running = self._borg
        if running and running.process.returncode is None:  # a check's earlier borg, ended: its pid may be reused
            running.terminate()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                machine_id = self._queue.pop(0)
                self._busy = True
            started = time.monotonic()
            try:
                outcome = repository_check.check_machine(self.services, machine_id, self._started)
                logger.info("post-session check of %s: %s in %.2f s", machine_id, outcome["result"],
                            time.monotonic() - started)
            except Cancelled:
                logger.info("post-session check of %s stopped with the server (it stays pending)", machine_id)
            except Exception as e:  # the check failing must never end serve; it stays pending
                logger.error("post-session check of %s failed (it stays pending): %s", machine_id,
                             getattr(e, "message", None) or repr(e), exc_info=not hasattr(e, "message"))
            with self._changed:
                self._busy, self._borg = False, None
            self._release_when_quiet()

    def _started(self, running: execute.Running) -> None:
        """Remember the check's borg; one started while stopping is stopped at once."""
        with self._changed:
            self._borg = running
            stopping = self._stopping
        if stopping:
            running.terminate()

    def _release_when_quiet(self) -> None:
        """Once no check is queued (a burst of sessions is over), give the memory freed
        since back to the system: glibc keeps it, and RSS would creep up burst after burst."""
        with self._changed:
            if self._queue:
                return
        memory.release_free()
