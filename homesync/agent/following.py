"""Following the fleet policy while the agent runs: ask the server at start, on every
corporate link-up, after each backup, when the server answers again, and at least every
policy_interval; hand each new policy to the agent, which applies it without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from homesync.agent import fleet
from homesync.config import AgentConfig, Paths
from homesync.errors import ConfigError, HomesyncError

log = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 1.0, 60.0


class PolicyFollower:
    """Keeps the agent's policy current; apply(effective) runs in the event loop."""

    def __init__(self, paths: Paths, current: fleet.Effective, apply: Callable[[fleet.Effective], None],
                 waiting: Callable[[str], None], config_now: Callable[[], AgentConfig] | None = None) -> None:
        self.paths, self.current, self._apply, self._waiting = paths, current, apply, waiting
        # the configuration the agent runs with now (its server: the address that answered)
        self._config_now = config_now or (lambda: self.current.config)
        self.state = "cached" if current.policy is not None else "none"
        self.detail = "cached: the last one received (not asked yet)" if current.policy else "not asked yet"
        self.last_contact: float | None = None
        self.next_contact: float | None = None
        self._wake = asyncio.Event()
        self._failures = 0
        self._stopping = False

    def wake(self, why: str) -> None:
        """Ask the server at once (a link-up, a backup done, the server back)."""
        log.debug("asking for the fleet policy: %s", why)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Ask, apply, wait; until stop()."""
        while not self._stopping:
            self._wake.clear()
            await self._contact()
            delay = self._delay()
            self.next_contact = time.time() + delay
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    def _delay(self) -> float:
        interval = max(self.current.config.agent.policy_interval, 0.5)
        if self._failures == 0:
            return interval
        # Away from the server with a policy in hand, the link-up and "server back" events
        # wake this early; without one, keep trying at least every minute.
        cap = min(interval, RETRY_MAX) if self.current.policy is None else interval
        return min(cap, RETRY_MIN * 2 ** min(self._failures - 1, 20))

    async def _contact(self) -> None:
        applied = self.current.policy.version if self.current.policy is not None else None
        try:
            policy = await asyncio.to_thread(fleet.fetch, self._config_now(), self.paths, applied)
        except HomesyncError as e:
            self._failed(e.line())
            return
        except Exception as e:  # a bug must not stop the agent
            log.exception("asking for the fleet policy failed")
            self._failed(f"internal error: {type(e).__name__}: {e}")
            return
        self._failures, self.last_contact = 0, time.time()
        old = self.current.policy
        if old is not None and (old.version, old.values, old.sources) == (policy.version, policy.values,
                                                                           policy.sources):
            self.state, self.detail = "current", "current: checked with the server"
            return
        try:
            effective = fleet.effective(self.paths, policy)
        except ConfigError as e:
            self._failed(f"the policy cannot be applied: {e.message}")
            return
        await asyncio.to_thread(fleet.write_cache, self.paths, policy)
        self.current = effective
        self._apply(effective)
        self.state, self.detail = "current", "current: received from the server"
        log.info("fleet policy version %d applied (was %s)", policy.version, old.version if old else "none")
        try:  # tell the server at once which version runs now
            await asyncio.to_thread(fleet.fetch, self._config_now(), self.paths, policy.version)
        except HomesyncError as e:
            log.info("could not tell the server the policy version applied (will at the next contact): %s",
                     e.message)

    def _failed(self, why: str) -> None:
        self._failures += 1
        if self.current.policy is None:
            self.state, self.detail = "waiting", f"waiting for the fleet policy: the backup server did not answer ({why})"
            self._waiting(self.detail)
        else:
            self.state = "cached"
            self.detail = f"cached: the server did not answer ({why})"
        if self._failures == 1:
            log.info("could not ask the server for the fleet policy: %s", why)

    def status(self) -> dict:
        policy, effective = self.current.policy, self.current
        ignored = effective.ignored()
        return {"version": policy.version if policy else None, "state": self.state, "detail": self.detail,
                "received": policy.fetched_at if policy else None, "last_contact": self.last_contact,
                "next_contact": self.next_contact, "sources": effective.sources, "ignored": ignored,
                "server_answers_is_corporate": effective.no_rules()}
