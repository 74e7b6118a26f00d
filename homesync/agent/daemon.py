"""`homesync agent`: the per-user daemon. Wires the parts together (network and power
monitors, watcher, notifier, status socket, server reports) around the scheduler, and
takes them apart again on SIGTERM or SIGINT, leaving a running borg a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
import warnings

from homesync import __version__, config as agent_config, site, state_files
from homesync.actions import backup
from homesync.agent import control, fleet, policy, reachability, record as agent_record
from homesync.agent.dirty import DirtySet
from homesync.agent.first_login import FirstLogin
from homesync.agent.exclusions import Exclusions
from homesync.agent.following import PolicyFollower
from homesync.agent.netwatch import NetworkMonitor, NullMonitor, open_network_monitor
from homesync.agent.notify import Notifier, NullNotifier, open_notifier
from homesync.agent.power import PowerMonitor, open_power_monitor
from homesync.agent.reporting import ServerReporter, rpc_sender
from homesync.agent.scheduler import Job, Scheduler
from homesync.agent.watcher import Watcher
from homesync.config import AgentConfig, Paths
from homesync.errors import ConfigError, ConflictError, NotEnrolledError
from homesync.files import only_one
from homesync.results import BackupResult
from homesync.site import Site

log = logging.getLogger(__name__)

PROBE_TIMEOUT = fleet.PROBE_TIMEOUT
LOCK_NAME = "agent.lock"


def run(paths: Paths) -> int:
    """Run the agent until SIGTERM or SIGINT; return 0 after a clean stop. Raise
    HomesyncError if it cannot start (not enrolled, bad configuration, already running)."""
    effective, found = _effective_or_site(paths)  # config.toml over the cached fleet policy
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)  # a daemon's log is what its user reads
    # watchdog warns when a new directory's watch is added twice (harmless, one per directory
    # borg creates): noise in the journal.
    warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
    with _single_instance(paths):
        if effective is None and asyncio.run(FirstLogin(paths, found).run()) is not None:
            effective = fleet.load(paths)  # set up meanwhile: the same process becomes the agent
        if effective is not None:
            if not effective.config.source.is_dir():
                raise ConfigError(f"the backup source {effective.config.source} is not a directory")
            asyncio.run(Agent(effective.config, paths, effective).run())
    log.info("agent stopped")
    return 0


def _effective_or_site(paths: Paths) -> tuple[fleet.Effective | None, Site | None]:
    """Return what this computer runs with (config.toml over the cached fleet policy), or
    (not set up, with a site configuration) None and the site. Raise NotEnrolledError
    when neither exists."""
    try:
        return fleet.load(paths), None
    except NotEnrolledError:
        found = site.load()
        if found is None:
            raise
        return None, found


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

    def __init__(self, config: AgentConfig, paths: Paths, effective: fleet.Effective | None = None) -> None:
        self.config, self.paths = config, paths
        self.started = time.time()
        self._answered_via = ""  # the configured address the one that answered last came from
        self.record = agent_record.load(paths)
        self.record.forget_revocation_unless(config.machine_id)
        self.dirty = DirtySet(possibly_dirty=True)  # what changed while the agent was not running is unknown
        self.reporter = ServerReporter(lambda state, reason: rpc_sender(self.config, paths)(state, reason))
        self.network: NetworkMonitor = NullMonitor("not started yet")
        self.power: PowerMonitor | None = None
        self.notifier: Notifier = NullNotifier("not started yet")
        self._notifications: bool | None = None  # what the notifier was opened for (None: not yet)
        self._notifier_lock = asyncio.Lock()
        self._switching: set[asyncio.Task] = set()
        self.watcher: Watcher | None = None
        self.scheduler = Scheduler(
            policy_settings(config), self.dirty, self.record, run_backup=self._run_backup, probe=self._probe,
            save=lambda r: agent_record.save(r, paths), notifier=self.notifier, reporter=self.reporter,
            protection_target=config.agent.recovery_point_target, machine_id=config.machine_id)
        self.dirty.on_dirty = self.scheduler.files_changed
        effective = effective or fleet.Effective(config, None, {})
        self.follower = PolicyFollower(paths, effective, self._apply_policy, self.scheduler.wait_for_policy,
                                       config_now=lambda: self.config)
        if effective.policy is None:  # until the server answers, the rules are not known
            self.scheduler.wait_for_policy("waiting for the fleet policy: asking the backup server")
        self.scheduler.after_job = lambda: self.follower.wake("a backup ended")
        self.scheduler.on_server_back = lambda: self.follower.wake("the backup server answers")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        status = await control.ControlServer.start(self.paths, self._answer)
        following = loop.create_task(self.follower.run())
        try:
            await self._open_parts()
            await self.scheduler.run()
        finally:
            self.follower.stop()
            following.cancel()
            await self.scheduler.shutdown()
            await self._close_parts()
            await status.close()

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: stopping", signal.Signals(sig).name)
        self.scheduler.stop()

    async def _open_parts(self) -> None:
        """Open the monitors, the notifier and the watcher; none of them failing stops the agent."""
        rules = self.config.network
        self.network = await open_network_monitor(rules, self._network_changed)
        if self.config.network != rules:  # a fleet policy came while it opened: _apply_policy could not tell it
            set_rules = getattr(self.network, "set_rules", None)
            if set_rules is not None:
                set_rules(self.config.network)
        self.scheduler.network_changed(self.network.view)
        self.power = await open_power_monitor(self.scheduler.power_changed)
        self.scheduler.power_changed(self.power.state)
        await self._switch_notifier()
        self.watcher = Watcher(self.config.source, self.dirty, self._exclusions(self.config),
                               scan_interval=self.config.agent.scan_interval)
        await asyncio.to_thread(self.watcher.start)  # walks the tree: seconds on a large home

    def _exclusions(self, config: AgentConfig) -> Exclusions:
        """Return what the watcher ignores: exactly what config's backups leave out."""
        return Exclusions(self.paths.own(), source=config.source, patterns=config.exclusion_patterns(self.paths),
                          markers=agent_config.MARKERS)

    def _set_exclusions(self, config: AgentConfig) -> None:
        """Give the watcher a new policy's exclusions. What they no longer exclude is not in
        the last archive and what they now exclude still is: either way the next backup differs."""
        if self.watcher is None:
            return  # not opened yet: _open_parts builds it from self.config, already the new one
        exclusions = self._exclusions(config)
        if exclusions.patterns == self.watcher.exclusions.patterns:
            return
        self.watcher.set_exclusions(exclusions)
        self.dirty.mark_possibly_dirty("the backup exclusions changed (fleet policy)")

    async def _switch_notifier(self) -> None:
        """Open the desktop notifier, or close it, as [agent] notifications now says (at
        start, and when a new fleet policy switches it while running)."""
        async with self._notifier_lock:
            wanted = self.config.agent.notifications
            if wanted == self._notifications:
                return
            old, switching, self._notifications = self.notifier, self._notifications is not None, wanted
            self.notifier = await open_notifier() if wanted else NullNotifier("disabled in [agent]")
            self.scheduler.notifier = self.notifier
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), 5)
            if switching:
                log.info("desktop notifications %s", "on" if wanted else "off")

    def _network_changed(self, view: policy.NetworkView) -> None:
        """Tell the scheduler; a corporate link-up is also a time to ask for the fleet policy."""
        was = self.scheduler.network
        self.scheduler.network_changed(view)
        if view.known and view.on_corporate and not (was.known and was.on_corporate):
            self.follower.wake("the corporate network came up")

    def _apply_policy(self, effective: fleet.Effective) -> None:
        """Run with a new fleet policy from now on, without a restart: the schedule, the
        network rules, the server address, the exclusions (the watcher's and the next backup's),
        the upload limit, notifications and the scan interval."""
        listed = effective.addresses()
        keep = self.config.server if self.config.server in listed or self._answered_via in listed \
            else effective.config.server
        self.config = dataclasses.replace(effective.config, server=keep)  # the address that answered, if still listed
        set_rules = getattr(self.network, "set_rules", None)
        if set_rules is not None:
            set_rules(effective.config.network)
        self.scheduler.reconfigure(policy_settings(effective.config), effective.config.agent.recovery_point_target)
        if self.watcher is not None:
            self.watcher.set_scan_interval(effective.config.agent.scan_interval)
        self._set_exclusions(effective.config)
        if self._notifications is not None and self._notifications != effective.config.agent.notifications:
            task = asyncio.get_running_loop().create_task(self._switch_notifier())
            self._switching.add(task)
            task.add_done_callback(self._switching.discard)

    async def _close_parts(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
        for part in (self.network, self.power, self.notifier):
            if part is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(part.close(), 5)
        self.reporter.submit("stopped", "the agent was stopped (logout, shutdown or by hand)")
        await asyncio.to_thread(self.reporter.close, 3.0)

    def _run_backup(self, job: Job) -> BackupResult:
        """Run one backup (in a worker thread)."""
        return backup.backup(self.config, self.paths, on_event=job.on_event, on_start=job.attach,
                             stopped=lambda: job.stopped)

    async def _probe(self) -> reachability.Reachability:
        """Probe the server; with several addresses (the fleet policy's or config.toml's, or
        a name's A/AAAA records), the first that answers (the one that answered last
        first) is the one the next backup and policy contact use."""
        addresses = self.follower.current.addresses()
        address, result = await reachability.first_answering(addresses, timeout=PROBE_TIMEOUT,
                                                             preferred=fleet.last_answered(self.paths))
        if result.ok:
            self._answered_via = result.via
            await asyncio.to_thread(fleet.remember_answered, self.paths, address)
            if address != self.config.server:
                log.info("using the backup server at %s%s", address,
                         f" (of {result.via})" if result.via != address else "")
                self.config = dataclasses.replace(self.config, server=address)
        return result

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
                   "scan_interval": self.watcher.scan_interval if self.watcher else self.config.agent.scan_interval,
                   "warnings": list(self.watcher.warnings) if self.watcher else []}
        warnings = list(watcher["warnings"]) + state_files.notes()  # until the next backup says them
        if not status["network"]["known"]:
            warnings.append(f"{status['network']['detail']}; backing up whenever the backup server answers")
        if status["consecutive_failures"] and status["last_result"]:
            warnings.append(f"the last {status['consecutive_failures']} backup attempt(s) failed: "
                            f"{status['last_result']['error']}")
        status["network"]["monitor"] = network_monitor
        status["server"]["address"] = self.config.server
        fleet_status = self.follower.status()
        status["network"]["server_answers_is_corporate"] = fleet_status["server_answers_is_corporate"]
        warnings += [f"config.toml sets {key}, which the fleet policy does not let users override: ignored"
                     for key in fleet_status["ignored"]]
        return {"agent": {"running": True, "pid": os.getpid(), "version": __version__, "started": self.started},
                "now": now, "machine": self.config.machine_name, **status,
                "watcher": watcher, "notifications": not isinstance(self.notifier, NullNotifier),
                "policy": fleet_status,
                "warnings": warnings}


def _single_instance(paths: Paths) -> contextlib.AbstractContextManager[None]:
    """Hold a lock for as long as the agent runs; raise ConflictError if another agent holds it."""
    return only_one(paths.state_dir / LOCK_NAME,
                    ConflictError("another homesync agent is already running for this user", "see `homesync status`"))
