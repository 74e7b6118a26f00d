"""The agent's scheduler: one asyncio task that gathers the state, asks the policy, probes
the server when told to, runs one backup at a time in a worker thread, and stops it when
the corporate link goes away. It decides nothing itself, and it waits for events or for
the time the policy names, never polling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable

from homesync.agent import policy
from homesync.agent.dirty import DirtySet
from homesync.agent.notify import NORMAL, Notice, Notifier, Protection, decide_notice
from homesync.agent.policy import NetworkView, PowerState, ServerView
from homesync.agent.reachability import Reachability
from homesync.agent.record import SUCCESSFUL, Record
from homesync.agent.reporting import ServerReporter
from homesync.errors import Cancelled, ConnectionFailedError, HomesyncError, MachineRevokedError
from homesync.execute import Running
from homesync.results import BackupResult

log = logging.getLogger(__name__)

# The event loop's clock stands still while the computer sleeps, so a long wait could
# overshoot a wall-clock deadline by the length of a suspend: look again at least this often.
MAX_SLEEP = 600.0
MIN_SLEEP = 0.05
STOP_GRACE = 30.0   # how long borg may take to write its checkpoint after SIGINT
KILL_GRACE = 15.0

_COUNTDOWNS = (policy.Why.BACKOFF, policy.Why.SETTLING, policy.Why.MIN_INTERVAL,  # their text says "in N s"
               policy.Why.SERVER_UNREACHABLE)

RunBackup = Callable[["Job"], BackupResult]
ProbeServer = Callable[[], Awaitable[Reachability]]


class Job:
    """One running backup: its progress from borg's events, and the handle that stops it.

    attach() and on_event() are called from the backup's threads, stop() from the loop.
    """

    def __init__(self, started: float, why: policy.Run, expected_size: int | None) -> None:
        self.started, self.why, self.expected_size = started, why, expected_size
        self.stop_reason: str | None = None
        self.progress = {"bytes": 0, "files": 0}
        self._running: Running | None = None
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def attach(self, running: Running) -> None:
        """Keep borg's handle; interrupt it at once if a stop came before it started."""
        with self._lock:
            self._running = running
            if self.stop_reason is not None:
                running.interrupt()

    def stop(self, reason: str) -> None:
        """Ask borg to stop the way Ctrl-C does: it writes a checkpoint, then exits."""
        with self._lock:
            if self.stop_reason is not None:
                return
            self.stop_reason = reason
            if self._running is not None:
                self._running.interrupt()
        log.info("stopping the backup (%s); borg writes a checkpoint the next one continues from", reason)

    def terminate(self) -> None:
        """Stop borg without waiting for its checkpoint."""
        with self._lock:
            if self._running is not None:
                self._running.terminate()

    def on_event(self, event: dict) -> None:
        """Take the progress out of borg's archive_progress events."""
        if event.get("type") == "archive_progress" and not event.get("finished"):
            self.progress = {"bytes": int(event.get("original_size") or 0), "files": int(event.get("nfiles") or 0)}

    def describe(self, now: float | None = None) -> dict:
        """Return the job as status shows it; percent and the time left are estimated
        from the last archive's size, the rate from the bytes read since the start."""
        progress = dict(self.progress)
        elapsed = (time.time() if now is None else now) - self.started
        rate = round(progress["bytes"] / elapsed) if elapsed > 0 else 0
        percent = seconds_left = None
        if self.expected_size:
            percent = min(99.0, round(100.0 * progress["bytes"] / self.expected_size, 1))
            if rate and progress["bytes"] < self.expected_size:
                seconds_left = round((self.expected_size - progress["bytes"]) / rate)
        return {"started": self.started, "why": self.why.text, **progress, "percent": percent, "rate": rate,
                "seconds_left": seconds_left, "stopping": self.stop_reason}


class Scheduler:
    """Owns the agent's state and its one job; fed by the monitors' callbacks (in the loop)
    and by the dirty set (from the watcher's thread, through files_changed)."""

    def __init__(self, settings: policy.Settings, dirty: DirtySet, record: Record, *, run_backup: RunBackup,
                 probe: ProbeServer, save: Callable[[Record], None], notifier: Notifier,
                 reporter: ServerReporter | None, protection_target: float,
                 clock: Callable[[], float] = time.time, machine_id: str = "") -> None:
        self.settings, self.dirty, self.record = settings, dirty, record
        self._run_backup, self._probe_server, self._save = run_backup, probe, save
        self.notifier, self._reporter, self._target, self._clock = notifier, reporter, protection_target, clock
        self.network = NetworkView(known=False, reason="NetworkManager not read yet")
        self.power = PowerState(known=False)
        self.server = ServerView()
        self.last_probe = ""
        self.decision: policy.Decision | None = None
        self.next_check: float | None = None
        self.job: Job | None = None
        self._job_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._network_generation = 0
        self._reported: tuple[str, str, str] | None = None
        self.machine_id = machine_id
        self.policy_missing = ""
        self.after_job: Callable[[], None] | None = None       # e.g. ask for the fleet policy
        self.on_server_back: Callable[[], None] | None = None  # the server answers again

    # --- events -------------------------------------------------------------------------

    def network_changed(self, view: NetworkView) -> None:
        """Take a new network view: the server must be probed again, a job may have to stop."""
        self.network, self.server = view, ServerView()
        self._network_generation += 1
        if self.job is not None:
            stop = policy.must_stop(self.state())
            if stop is not None:
                self.job.stop(stop.text)
        self._wake.set()

    def power_changed(self, state: PowerState) -> None:
        self.power = state
        self._wake.set()

    def files_changed(self) -> None:
        """Wake the loop after the source went from clean to dirty (any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop closed meanwhile: the agent is stopping
            pass

    def reconfigure(self, settings: policy.Settings, protection_target: float) -> None:
        """Take new tunables (a new fleet policy) and decide again at once."""
        self.settings, self._target, self.policy_missing = settings, protection_target, ""
        self._wake.set()

    def wait_for_policy(self, why: str) -> None:
        """Hold backups until a fleet policy is known (none cached, server not reached)."""
        self.policy_missing = why
        self._wake.set()

    def stop(self) -> None:
        """End run() at the next turn (signal handler)."""
        self._stopping = True
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------

    def state(self) -> policy.AgentState:
        """Return everything the policy looks at, as it is now."""
        return policy.AgentState(dirty=self.dirty.state(), network=self.network, power=self.power,
                                 history=self.record.history(), server=self.server,
                                 job_running=self.job is not None, settings=self.settings,
                                 policy_missing=self.policy_missing)

    async def run(self) -> None:
        """Decide, act, wait for an event or the next deadline; until stop()."""
        self._loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            now = self._clock()
            decision = policy.decide(self.state(), now)
            self._publish(decision)
            notice_at = await self._notice(decision, now)
            if self._stopping:
                break
            if isinstance(decision, policy.Run):
                self._start(decision, now)
            elif isinstance(decision, policy.Probe):
                await self._probe()
            else:
                await self._sleep(min(decision.retry_at, notice_at) - now)

    async def shutdown(self) -> None:
        """Stop a running backup (checkpoint first, then harder) and wait for it to end."""
        self._stopping = True
        job, task = self.job, self._job_task
        if job is None or task is None or task.done():
            return
        job.stop("the agent is stopping")
        if not await _finished(task, STOP_GRACE):
            log.warning("borg did not stop within %g s of SIGINT; terminating it", STOP_GRACE)
            job.terminate()
            if not await _finished(task, KILL_GRACE):
                log.error("borg did not stop; leaving it behind")

    async def _sleep(self, timeout: float) -> None:
        timeout = MAX_SLEEP if not math.isfinite(timeout) else min(max(timeout, MIN_SLEEP), MAX_SLEEP)
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _publish(self, decision: policy.Decision) -> None:
        """Keep the decision for status, log it when its reason changes, tell the server."""
        previous, self.decision = self.decision, decision
        self.next_check = decision.retry_at if isinstance(decision, policy.Skip) and \
            math.isfinite(decision.retry_at) else None
        if previous is None or previous.code != decision.code:
            if isinstance(decision, policy.Skip) and decision.code != policy.Why.JOB_RUNNING:
                log.info("not backing up: %s", decision.text)
        state, code, text = self.agent_state()
        # Say it again when the reason changes, not when only its countdown does.
        said = (state, code, "" if code in _COUNTDOWNS else text)
        transient = isinstance(decision, policy.Probe)  # a probe answers within seconds
        if self._reporter is not None and not transient and said != self._reported:
            self._reported = said
            self._reporter.submit(state, text)

    def agent_state(self) -> tuple[str, str, str]:
        """Return (state, reason code, reason text); state is idle, backing up, waiting or starting."""
        if self.job is not None:
            return "backing up", self.job.why.code, self.job.why.text
        decision = self.decision
        if decision is None:
            return "starting", "starting", "the agent is starting"
        if isinstance(decision, policy.Skip) and decision.code == policy.Why.UP_TO_DATE:
            return "idle", decision.code, decision.text
        if isinstance(decision, policy.Skip) and decision.code == policy.Why.REVOKED:
            return "stopped", decision.code, decision.text
        return "waiting", decision.code, decision.text

    async def _notice(self, decision: policy.Decision, now: float) -> float:
        """Show an at-risk or protected-again notice when it is due; return when to look again."""
        if self.record.revoked:
            return await self._revoked_notice()
        hint = decision.text if isinstance(decision, policy.Skip) and decision.code not in (
            policy.Why.UP_TO_DATE, policy.Why.JOB_RUNNING) else ""
        record = self.record
        answer = decide_notice(Protection(record.last_success, self._target, record.warned, record.reference),
                               now, hint=hint)
        if answer.warned != record.warned:
            record.warned = answer.warned  # kept before showing: at most once, even if showing fails
            self._save(record)
        if answer.notice is not None:
            log.info("notice: %s: %s", answer.notice.summary, answer.notice.body)
            try:
                await self.notifier.show(answer.notice)
            except Exception:
                log.exception("could not show a notice")
        return answer.check_at

    async def _revoked_notice(self) -> float:
        """Say once (across restarts) that this computer is no longer backed up, and why; no other notice follows."""
        revoked = self.record.revoked
        if not revoked.get("notified"):
            revoked["notified"] = True  # kept before showing: at most once, even if showing fails
            self._save(self.record)
            notice = Notice("revoked", "This computer is no longer backed up", revoked["line"], NORMAL)
            log.info("notice: %s: %s", notice.summary, notice.body)
            try:
                await self.notifier.show(notice)
            except Exception:
                log.exception("could not show a notice")
        return math.inf

    async def _probe(self) -> None:
        """Probe the server; a result that straddles a network change is thrown away."""
        generation = self._network_generation
        result = await self._probe_server()
        if generation != self._network_generation:
            return
        was = self.server.reachable
        self.server = self.server.after_probe(result.ok, self._clock())
        self.last_probe = result.detail
        if result.ok != was:
            log.info("backup server %s: %s", "reachable" if result.ok else "not reachable", result.detail)
        if result.ok and self._reporter is not None:
            self._reporter.resend_unsent()
        if result.ok and was is not True and self.on_server_back is not None:
            self.on_server_back()

    # --- the job ------------------------------------------------------------------------

    def _start(self, why: policy.Run, now: float) -> None:
        log.info("backing up: %s", why.text)
        self.job = Job(now, why, self.record.last_size)
        self._job_task = asyncio.get_running_loop().create_task(self._run_job(self.job))

    async def _run_job(self, job: Job) -> None:
        summary: BackupResult | None = None
        try:
            summary = await asyncio.to_thread(self._run_backup, job)
            result, error = summary.result, "; ".join(summary.warnings)
        except Cancelled as exc:
            result, error = "interrupted", job.stop_reason or exc.message
        except MachineRevokedError as exc:  # for good: the policy stops trying
            result, error = "failed", exc.line()
            self.record.revoked = {"machine_id": self.machine_id, "line": exc.line(), "notified": False}
            log.error("the server refused this computer for good; not backing up any more: %s", exc.line())
        except ConnectionFailedError as exc:
            result, error = ("interrupted", job.stop_reason) if job.stopped else ("failed", exc.line())
            self.server = ServerView()  # the node that answered died or drains: probe (fail over) before the retry
        except HomesyncError as exc:
            result, error = ("interrupted", job.stop_reason) if job.stopped else ("failed", exc.line())
        except Exception as exc:  # a bug must not end the schedule: count it as a failure
            log.exception("the backup failed unexpectedly")
            result, error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        self._finish(job, result, error or "", summary)

    def _finish(self, job: Job, result: str, error: str, summary: BackupResult | None) -> None:
        """Record the outcome; clear what the backup covered; wake the loop."""
        ended, record = self._clock(), self.record
        record.last_attempt = ended
        if result in SUCCESSFUL:
            record.last_success, record.consecutive_failures = ended, 0
            record.last_size = summary.original_size if summary is not None else record.last_size
            self.dirty.clear_up_to(job.started)
        elif result == "failed":
            record.consecutive_failures += 1
        record.last_result = {"result": result, "archive": summary.name if summary is not None else None, "started": job.started,
                              "ended": ended, "error": error[:500]}
        self._save(record)
        log_level = logging.WARNING if result == "failed" else logging.INFO
        log.log(log_level, "backup %s after %.1f s%s", result, ended - job.started, f": {error}" if error else "")
        self.job, self._job_task = None, None
        self._reported = None  # after each job, tell the server again
        self._wake.set()
        if self.after_job is not None:
            self.after_job()

    # --- status -------------------------------------------------------------------------

    def status(self) -> dict:
        """Return the scheduler's part of `homesync status`."""
        state, code, text = self.agent_state()
        (dirty, sample, possible_reason), record = self.dirty.snapshot(), self.record
        return {
            "state": state,
            "reason": None if state == "backing up" else {"code": code, "text": text},
            "next_check": self.next_check,
            "job": self.job.describe() if self.job is not None else None,
            "network": {"known": self.network.known, "on_corporate": self.network.on_corporate,
                        "via": self.network.via, "metered": self.network.metered,
                        "since": self.network.since, "detail": self.network.reason},
            "server": {"reachable": self.server.reachable, "checked_at": self.server.checked_at,
                       "detail": self.last_probe},
            "power": {"known": self.power.known, "on_battery": self.power.on_battery,
                      "percentage": self.power.percentage},
            "dirty": {"count": dirty.count, "possibly_dirty": dirty.possibly_dirty,
                      "possible_reason": possible_reason,
                      "last_change": dirty.last_change, "sample": sample[-5:]},
            "last_success": record.last_success,
            "last_attempt": record.last_attempt,
            "consecutive_failures": record.consecutive_failures,
            "last_result": record.last_result,
            "warned": record.warned,
        }


async def _finished(task: asyncio.Task, timeout: float) -> bool:
    done, _ = await asyncio.wait({task}, timeout=timeout)
    return bool(done)
