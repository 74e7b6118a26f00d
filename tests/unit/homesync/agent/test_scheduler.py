"""The scheduler with fakes in place of borg, the server and the desktop: one job at a
time, stopped when the link goes, cleared only up to its start, and what it remembers."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from homesync.agent import policy
from homesync.agent.dirty import DirtySet
from homesync.agent.notify import NullNotifier
from homesync.agent.policy import NetworkView
from homesync.agent.reachability import Reachability
from homesync.agent.record import Record
from homesync.agent.scheduler import Scheduler
from homesync.errors import BorgError, ConnectionFailedError
from homesync.results import BackupResult

ON = NetworkView(on_corporate=True, via="Office", known=True, since=1.0, reason="on the corporate network via Office")
OFF = NetworkView(on_corporate=False, known=True, reason="no active connection matches")
SETTINGS = policy.Settings(debounce=0.05, min_interval=0.05, backoff_base=60)


class FakeRunning:
    def __init__(self) -> None:
        self.signals: list[str] = []

    def interrupt(self) -> None:
        self.signals.append("INT")

    def terminate(self) -> None:
        self.signals.append("TERM")


class FakeBackup:
    """Stands in for actions.backup.backup: blocks until released, then returns or raises."""

    def __init__(self) -> None:
        self.running = FakeRunning()
        self.started = threading.Event()
        self.release = threading.Event()
        self.outcome: Exception | None = None
        self.calls = 0

    def __call__(self, job) -> BackupResult:
        self.calls += 1
        job.attach(self.running)
        job.on_event({"type": "archive_progress", "original_size": 5000, "nfiles": 3, "finished": False})
        self.started.set()
        assert self.release.wait(5)
        if self.outcome is not None:
            raise self.outcome
        return BackupResult(name="2026-01-01T00:00:00.000Z", start=0.0, end=1.0, files=3, original_size=10_000,
                            compressed_size=9_000, deduplicated_size=8_000, result="success")


class Reports:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def submit(self, state: str, reason: str) -> None:
        self.sent.append((state, reason))

    def resend_unsent(self) -> None:
        pass


def _scheduler(backup: FakeBackup, saved: list, reports: Reports | None = None, probes: list | None = None,
               notifier=None, target: float = 1e9):
    async def probe() -> Reachability:
        if probes is not None:
            probes.append(1)
        return Reachability(True, "answered", 0.001)
    dirty = DirtySet()
    scheduler = Scheduler(SETTINGS, dirty, Record(reference=0.0), run_backup=backup, probe=probe,
                          save=lambda r: saved.append(dict(vars(r))), notifier=notifier or NullNotifier(),
                          reporter=reports, protection_target=target)
    dirty.on_dirty = scheduler.files_changed
    return scheduler, dirty


async def _until(predicate, timeout: float = 3.0) -> None:
    async def wait():
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)


def _run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_link_up_backs_up_and_clears_only_what_the_job_covered():
    backup, saved, reports = FakeBackup(), [], Reports()

    async def scenario():
        scheduler, dirty = _scheduler(backup, saved, reports)
        scheduler.network_changed(OFF)
        loop = asyncio.create_task(scheduler.run())
        dirty.add("/home/joe/a")
        await asyncio.sleep(0.1)
        assert backup.calls == 0 and scheduler.agent_state()[1] == "off_network"
        scheduler.network_changed(ON)
        await _until(backup.started.is_set)
        assert scheduler.agent_state()[0] == "backing up"
        assert scheduler.status()["job"]["bytes"] == 5000
        dirty.add("/home/joe/b")  # after the job's start: must survive it
        backup.release.set()
        await _until(lambda: scheduler.job is None)
        assert dirty.sample() == ["/home/joe/b"] and dirty.state().count >= 1  # a shared time bucket may count a twice
        assert scheduler.record.last_success is not None and scheduler.record.last_size == 10_000
        assert saved[-1]["last_result"]["result"] == "success"
        scheduler.stop()
        await loop
        assert ("waiting", "not on the corporate network (no active connection matches)") in reports.sent
        assert reports.sent.count(reports.sent[0]) == 1  # said once, not at every wake-up
    _run(scenario)


def test_the_link_going_away_interrupts_borg_and_is_not_a_failure():
    backup = FakeBackup()
    backup.outcome = BorgError("borg create failed (rc 2): Got Ctrl-C / SIGINT.")

    async def scenario():
        scheduler, dirty = _scheduler(backup, [])
        scheduler.network_changed(ON)
        loop = asyncio.create_task(scheduler.run())
        await _until(backup.started.is_set)
        scheduler.network_changed(OFF)
        assert backup.running.signals == ["INT"]
        scheduler.network_changed(OFF)  # a second change does not signal borg again
        assert backup.running.signals == ["INT"]
        backup.release.set()
        await _until(lambda: scheduler.job is None)
        record = scheduler.record
        assert record.last_result["result"] == "interrupted" and record.consecutive_failures == 0
        assert record.last_success is None and dirty.state().possibly_dirty is False and dirty.state().count == 0
        scheduler.stop()
        await loop
    _run(scenario)


def test_a_failure_backs_off_and_a_probe_precedes_every_run():
    backup, probes = FakeBackup(), []
    backup.outcome = BorgError("borg create failed (rc 2): disk full")
    backup.release.set()

    async def scenario():
        scheduler, dirty = _scheduler(backup, [], probes=probes)
        dirty.add("/home/joe/a")
        scheduler.network_changed(ON)
        loop = asyncio.create_task(scheduler.run())
        await _until(lambda: scheduler.record.consecutive_failures == 1)
        await asyncio.sleep(0.2)
        assert backup.calls == 1 and len(probes) == 1
        assert scheduler.agent_state()[1] == "backoff"
        assert scheduler.status()["last_result"]["error"] == "borg create failed (rc 2): disk full"
        scheduler.stop()
        await loop
    _run(scenario)


def test_a_backup_cut_off_by_the_server_probes_again_before_the_retry():
    """A node that died (or drains) mid-backup: the retry must not trust the probe of a
    moment ago, which named that node; probing again is what fails over to the next
    address (the retry may come sooner than reachable_ttl)."""
    backup, probes = FakeBackup(), []
    backup.outcome = ConnectionFailedError("the backup server 10.0.0.11:2222 closed the connection")
    backup.release.set()

    async def scenario():
        scheduler, dirty = _scheduler(backup, [], probes=probes)
        scheduler.settings = dataclasses.replace(SETTINGS, backoff_base=0.05)
        dirty.add("/home/joe/a")
        scheduler.network_changed(ON)
        loop = asyncio.create_task(scheduler.run())
        await _until(lambda: backup.calls == 2)
        backup.outcome = None
        await _until(lambda: scheduler.record.last_success is not None)
        assert backup.calls >= 2 and len(probes) == backup.calls  # one before each attempt, within reachable_ttl
        scheduler.stop()
        await loop
    _run(scenario)


def test_shutdown_interrupts_then_terminates_a_job_that_will_not_stop(monkeypatch):
    from homesync.agent import scheduler as module
    monkeypatch.setattr(module, "STOP_GRACE", 0.1)
    backup = FakeBackup()

    async def scenario():
        scheduler, _ = _scheduler(backup, [])
        scheduler.network_changed(ON)
        loop = asyncio.create_task(scheduler.run())
        await _until(backup.started.is_set)
        scheduler.stop()
        await loop
        threading.Timer(0.3, backup.release.set).start()  # borg ends once terminated
        await scheduler.shutdown()
        assert backup.running.signals == ["INT", "TERM"]
        assert scheduler.record.last_result["result"] == "success"  # it finished meanwhile
    _run(scenario)


@pytest.mark.parametrize("warned", [False, True])
def test_at_risk_notice_is_shown_once_and_remembered(warned):
    shown = []

    class Notifier(NullNotifier):
        async def show(self, notice):
            shown.append(notice.kind)

    async def scenario():
        backup, saved = FakeBackup(), []
        scheduler, _ = _scheduler(backup, saved, notifier=Notifier(), target=0.0)
        scheduler.record.warned = warned
        scheduler.network_changed(OFF)
        loop = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.1)
        scheduler.network_changed(OFF)
        await asyncio.sleep(0.1)
        scheduler.stop()
        await loop
        assert scheduler.record.warned is True
        return saved
    saved = asyncio.run(scenario())
    assert shown == ([] if warned else ["at_risk"])
    assert (saved[-1]["warned"] if saved else warned) is True


class Notices:
    def __init__(self) -> None:
        self.shown = []

    async def show(self, notice) -> None:
        self.shown.append(notice)

    async def close(self) -> None:
        pass


def test_a_replaced_machine_stops_retrying_says_so_and_notifies_once():
    from homesync.errors import MachineReplacedError
    backup, saved, notices = FakeBackup(), [], Notices()
    backup.outcome = MachineReplacedError("the server refused this computer's key: it was replaced by the "
                                          "computer 'newbox', which took over machine 'Joe' on 2026-12-01")
    backup.release.set()

    async def scenario():
        scheduler, dirty = _scheduler(backup, saved, notifier=notices, target=1e12)
        scheduler.settings = policy.Settings(debounce=0.01, min_interval=0.01, backoff_base=0.01, backoff_cap=0.02)
        scheduler.machine_id = "a" * 16
        dirty.add("/home/joe/a")
        scheduler.network_changed(ON)
        loop = asyncio.create_task(scheduler.run())
        await _until(lambda: scheduler.record.revoked is not None)
        for i in range(5):  # changes and short back-offs would have brought more attempts
            dirty.add(f"/home/joe/b{i}")
            await asyncio.sleep(0.1)
        assert backup.calls == 1
        state, code, text = scheduler.agent_state()
        assert (state, code) == ("stopped", "revoked") and "replaced by the computer 'newbox'" in text
        assert [n.summary for n in notices.shown] == ["This computer is no longer backed up"]
        assert saved[-1]["revoked"] == {"machine_id": "a" * 16, "line": backup.outcome.line(), "notified": True}
        scheduler.stop()
        await loop
    _run(scenario)


def test_status_shows_the_changes_as_one_moment_while_the_watcher_adds():
    """The watcher's thread adds changes while status is asked: the count and the sample
    are read together, never a count from before an add with a sample from after it."""
    scheduler, dirty = _scheduler(FakeBackup(), [])
    dirty.on_dirty = None  # no event loop here: only the reads are under test
    total, done = 20_000, threading.Event()

    def watcher() -> None:
        for i in range(total):
            dirty.add(f"p{i}")
        done.set()

    thread = threading.Thread(target=watcher)
    thread.start()
    torn = []
    while not done.is_set():
        shown = scheduler.status()["dirty"]
        if shown["sample"] and int(shown["sample"][-1][1:]) != shown["count"] - 1:
            torn.append((shown["count"], shown["sample"][-1]))
    thread.join()
    assert not torn, f"{len(torn)} torn reads, e.g. {torn[:3]}"
