"""`homesync agent`: the per-user daemon. Wires the parts together (network and power
monitors, watcher, notifier, status socket, server reports) around the scheduler, and
takes them apart again on SIGTERM or SIGINT, leaving a running borg a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator

from homesync import __version__, config as agent_config, state_files, transport
from homesync.actions import backup
from homesync.agent import control, policy, reachability, record as agent_record
from homesync.agent.dirty import DirtySet
from homesync.agent.exclusions import Exclusions
from homesync.agent.netwatch import NetworkMonitor, NullMonitor, open_network_monitor
from homesync.agent.notify import Notifier, NullNotifier, open_notifier
from homesync.agent.power import PowerMonitor, open_power_monitor
from homesync.agent.reporting import ServerReporter, rpc_sender
from homesync.agent.scheduler import Job, Scheduler
from homesync.agent.watcher import Watcher
from homesync.config import AgentConfig, Paths
from homesync.errors import ConfigError, ConflictError

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0
LOCK_NAME = "agent.lock"


def run(paths: Paths) -> int:
    """Run the agent until SIGTERM or SIGINT; return 0 after a clean stop. Raise
    HomesyncError if it cannot start (not enrolled, bad configuration, already running)."""
    config = agent_config.load(paths)
    if not config.source.is_dir():
        raise ConfigError(f"the backup source {config.source} is not a directory")
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)  # a daemon's log is what its user reads
    # watchdog warns when a new directory's watch is added twice (harmless, one per directory
    # borg creates): noise in the journal.
    warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
    with _single_instance(paths):
        asyncio.run(Agent(config, paths).run())
    log.info("agent stopped")
    return 0


def policy_settings(config: AgentConfig) -> policy.Settings:
    """Return the policy's tunables from [agent] and [network] allow_metered."""
    agent = config.agent
    return policy.Settings(debounce=agent.debounce, settle_limit=agent.settle_limit,
                           min_interval=agent.min_interval, max_age=agent.max_age,
                           backoff_base=agent.retry_min, backoff_cap=agent.retry_max,
                           allow_metered=config.network.allow_metered,
                           min_battery_percent=agent.min_battery_percent)


class Agent:
    """The running agent's parts; run() starts them, serves until stopped, and closes them."""

    def __init__(self, config: AgentConfig, paths: Paths) -> None:
        self.config, self.paths = config, paths
        self.started = time.time()
        self.record = agent_record.load(paths)
        self.record.forget_revocation_unless(config.machine_id)
        self.dirty = DirtySet(possibly_dirty=True)  # what changed while the agent was not running is unknown
        self.reporter = ServerReporter(rpc_sender(config, paths))
        self.network: NetworkMonitor = NullMonitor("not started yet")
        self.power: PowerMonitor | None = None
        self.notifier: Notifier = NullNotifier("not started yet")
        self.watcher: Watcher | None = None
        self.scheduler = Scheduler(
            policy_settings(config), self.dirty, self.record, run_backup=self._run_backup, probe=self._probe,
            save=lambda r: agent_record.save(r, paths), notifier=self.notifier, reporter=self.reporter,
            protection_target=config.agent.recovery_point_target, machine_id=config.machine_id)
        self.dirty.on_dirty = self.scheduler.files_changed

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        status = await control.ControlServer.start(self.paths, self._answer)
        try:
            await self._open_parts()
            await self.scheduler.run()
        finally:
            await self.scheduler.shutdown()
            await self._close_parts()
            await status.close()

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: stopping", signal.Signals(sig).name)
        self.scheduler.stop()

    async def _open_parts(self) -> None:
        """Open the monitors, the notifier and the watcher; none of them failing stops the agent."""
        rules = self.config.network
        self.network = await open_network_monitor(rules, self.scheduler.network_changed)
        self.scheduler.network_changed(self.network.view)
        self.power = await open_power_monitor(self.scheduler.power_changed)
        self.scheduler.power_changed(self.power.state)
        if self.config.agent.notifications:
            self.notifier = await open_notifier()
        else:
            self.notifier = NullNotifier("disabled in [agent]")
        self.scheduler.notifier = self.notifier
        exclusions = Exclusions(self.paths.own(), source=self.config.source,
                                patterns=self.config.exclusion_patterns(self.paths), markers=agent_config.MARKERS)
        self.watcher = Watcher(self.config.source, self.dirty, exclusions,
                               scan_interval=self.config.agent.scan_interval)
        await asyncio.to_thread(self.watcher.start)  # walks the tree: seconds on a large home

    async def _close_parts(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
        for part in (self.network, self.power, self.notifier):
            if part is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(part.close(), 5)
        self.reporter.submit("stopped", "the agent was stopped (logout, shutdown or by hand)")
        await asyncio.to_thread(self.reporter.close, 3.0)

    def _run_backup(self, job: Job) -> dict:
        """Run one backup (in a worker thread)."""
        return backup.backup(self.config, self.paths, on_event=job.on_event, on_start=job.attach,
                             stopped=lambda: job.stopped)

    async def _probe(self) -> reachability.Reachability:
        host, port = transport.parse_address(self.config.server)
        return await reachability.probe_server(host, port, timeout=PROBE_TIMEOUT, banner=b"SSH-")

    def _answer(self, request: dict) -> dict:
        """Answer a status-socket request."""
        if request["op"] != "status":
            raise ValueError(f"unknown request {request['op']!r}")
        return self.status()

    def status(self) -> dict:
        """Return everything `homesync status` shows."""
        now = time.time()
        status = self.scheduler.status()
        network_monitor = "none" if isinstance(self.network, NullMonitor) else "NetworkManager"
        watcher = {"mode": self.watcher.mode if self.watcher else "starting",
                   "warnings": list(self.watcher.warnings) if self.watcher else []}
        warnings = list(watcher["warnings"]) + state_files.notes()  # until the next backup says them
        if not status["network"]["known"]:
            warnings.append(f"{status['network']['detail']}; backing up whenever the backup server answers")
        if status["consecutive_failures"] and status["last_result"]:
            warnings.append(f"the last {status['consecutive_failures']} backup attempt(s) failed: "
                            f"{status['last_result']['error']}")
        status["network"]["monitor"] = network_monitor
        status["server"]["address"] = self.config.server
        return {"agent": {"running": True, "pid": os.getpid(), "version": __version__, "started": self.started},
                "now": now, "machine": self.config.machine_name, **status,
                "watcher": watcher, "notifications": not isinstance(self.notifier, NullNotifier),
                "warnings": warnings}


@contextlib.contextmanager
def _single_instance(paths: Paths) -> Iterator[None]:
    """Hold a lock for as long as the agent runs; raise ConflictError if another agent holds it."""
    paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(paths.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError("another homesync agent is already running for this user",
                                "see `homesync status`") from None
        yield
    finally:
        os.close(fd)
