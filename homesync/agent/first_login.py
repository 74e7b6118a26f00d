"""The agent on a computer that is not set up yet, where the image's site configuration
says where the backup server is: it notifies once on the desktop that `homesync setup`
is the next step, answers `homesync status` saying so, and hands over to the real agent
as soon as the computer is set up."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from homesync import __version__, config as agent_config
from homesync.agent import control
from homesync.agent.notify import NORMAL, Notice, Notifier, open_notifier
from homesync.config import AgentConfig, Paths
from homesync.errors import ConfigError, NotEnrolledError
from homesync.site import Site

log = logging.getLogger(__name__)
CHECK_INTERVAL = 1.0  # a stat of config.toml: cheap, and setup is followed within a second
NOTICE = Notice("not_set_up", "This computer is not backed up yet",
                "Run homesync setup in a terminal to set it up: you only need your password.", NORMAL)


def reason(site: Site) -> str:
    return (f"this computer is not set up yet: run `homesync setup` (the backup server, "
            f"{', '.join(site.addresses)}, comes from {site.files[-1]})")


class FirstLogin:
    """Waits for the computer to be set up; run() returns its configuration, or None if stopped first."""

    def __init__(self, paths: Paths, site: Site) -> None:
        self.paths, self.site = paths, site
        self.started = time.time()
        self.notifier: Notifier | None = None
        self._stopped = asyncio.Event()

    async def run(self) -> AgentConfig | None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopped.set)
        status = await control.ControlServer.start(self.paths, self._answer)
        log.info("%s", reason(self.site))
        try:
            self.notifier = await open_notifier()
            await self.notifier.show(NOTICE)
            return await self._wait_for_setup()
        finally:
            if self.notifier is not None:
                await self.notifier.close()
            await status.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _wait_for_setup(self) -> AgentConfig | None:
        while not self._stopped.is_set():
            config = self._config()
            if config is not None:
                log.info("this computer is now set up as %r: starting the agent", config.machine_name)
                return config
            try:
                await asyncio.wait_for(self._stopped.wait(), CHECK_INTERVAL)
            except asyncio.TimeoutError:
                pass
        return None

    def _config(self) -> AgentConfig | None:
        """Return the configuration once setup has written it whole (its last step), else None."""
        try:
            return agent_config.load(self.paths)
        except NotEnrolledError:
            return None
        except ConfigError as e:  # mid-write, or hand-edited: say it, keep waiting
            log.info("config.toml is not usable yet: %s", e.message)
            return None

    def _answer(self, request: dict) -> dict:
        if request["op"] != "status":
            raise ValueError(f"unknown request {request['op']!r}")
        return {"agent": {"running": True, "pid": os.getpid(), "version": __version__, "started": self.started},
                "now": time.time(), "set_up": False, "state": "not set up",
                "reason": {"code": "not_set_up", "text": reason(self.site)},
                "site": {"files": [str(f) for f in self.site.files], "addresses": list(self.site.addresses)},
                "notifications": self.notifier is not None and type(self.notifier).__name__ != "NullNotifier",
                "warnings": []}
