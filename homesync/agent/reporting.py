"""Telling the server what the agent is doing and why it is not backing up
(`agent.report`), so that admins can see why a laptop is stale. Best effort, from a
thread of its own: the event loop never waits for the server, and the latest word wins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from homesync import __version__, link, protocol, transport
from homesync.config import AgentConfig, Paths
from homesync.errors import HomesyncError

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
MAX_REASON = 500

Send = Callable[[str, str], None]


class ServerReporter:
    """Sends (state, reason) reports one at a time in a background thread; a report
    submitted while another is on its way replaces any older one still waiting."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._changed = threading.Condition()
        self._waiting: tuple[str, str] | None = None
        self._unsent: tuple[str, str] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="homesync-report", daemon=True)
        self._thread.start()

    def submit(self, state: str, reason: str) -> None:
        """Queue a report; never blocks."""
        with self._changed:
            self._waiting = (state, reason[:MAX_REASON])
            self._changed.notify()

    def resend_unsent(self) -> None:
        """Queue the last report again if it could not be delivered (the server is back)."""
        with self._changed:
            if self._unsent is not None and self._waiting is None:
                self._waiting = self._unsent
                self._changed.notify()

    def close(self, timeout: float = 3.0) -> None:
        """Let a waiting report go out for up to timeout seconds, then stop."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting is not None or self._closing)
                report, self._waiting = self._waiting, None
                if report is None:
                    return
            self._deliver(report)

    def _deliver(self, report: tuple[str, str]) -> None:
        unsent: tuple[str, str] | None = report
        try:
            self._send(*report)
            unsent = None
            log.debug("told the server: %s: %s", *report)
        except HomesyncError as exc:
            log.info("could not tell the server the agent's state (will retry): %s", exc.message)
        except Exception:
            log.exception("could not tell the server the agent's state")
        with self._changed:
            self._unsent = unsent


def rpc_sender(config: AgentConfig, paths: Paths) -> Send:
    """Return a function that sends one agent.report as this machine, with timeouts."""
    def send(state: str, reason: str) -> None:
        with link.machine_session(config, paths) as session:
            rpc = transport.RpcClient(session.exec(protocol.RPC_COMMAND, timeout=RPC_TIMEOUT), session.address)
            rpc.call("agent.report", state=state, reason=reason, version=__version__)
    return send
