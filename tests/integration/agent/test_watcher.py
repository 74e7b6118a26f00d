"""The watcher on real inotify in temporary trees: what counts, what is excluded, bursts,
clearing up to a job's start, and the fall-back to scans when the watch limit is reached."""

from __future__ import annotations

import errno
import logging
import os
import time

import pytest

from homesync.agent import watcher as watcher_module
from homesync.agent.dirty import DirtySet
from homesync.agent.exclusions import CACHEDIR_SIGNATURE, Exclusions
from homesync.agent.policy import AgentState, History, NetworkView, Run, ServerView, Settings, decide
from homesync.agent.watcher import Watcher
from tests.integration.agent.waiting import eventually_sync


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    for directory in ("Documents", ".cache/app", ".local/share/Trash/files", ".local/state/homesync",
                      "build", "venv-cache"):
        (home / directory).mkdir(parents=True)
    (home / "build/.nobackup").touch()
    (home / "venv-cache/CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE)
    (home / "Documents/report.txt").write_text("v1")
    return home


def _exclusions(home) -> Exclusions:
    """What a backup of this home leaves out, as the backup's configuration says."""
    return Exclusions([home / ".local/state/homesync"], source=home,
                      patterns=["sh:.cache", "sh:.local/share/Trash"])


@pytest.fixture
def watching(home):
    """Start a watcher on the home fixture; yield (watcher, dirty, calls to on_dirty)."""
    calls = []
    dirty = DirtySet(on_dirty=lambda: calls.append(time.monotonic()))
    watcher = Watcher(home, dirty, _exclusions(home))
    watcher.start()
    assert watcher.mode == "inotify" and watcher.warnings == []
    yield watcher, dirty, calls
    watcher.stop()


def _settle(dirty: DirtySet, home, count: int) -> None:
    """Make a sentinel change and wait until it (and everything before it) was counted."""
    sentinel = home / f"sentinel-{count}"
    sentinel.touch()
    eventually_sync(lambda: str(sentinel) in dirty.sample(), what=f"event for {sentinel.name}")


def test_create_modify_move_delete_are_counted(watching, home):
    _, dirty, calls = watching
    doc = home / "Documents"
    steps = [
        (lambda: (doc / "new.txt").write_text("hello"), doc / "new.txt"),
        (lambda: (doc / "report.txt").write_text("v2"), doc / "report.txt"),
        (lambda: os.chmod(doc / "report.txt", 0o600), doc / "report.txt"),
        (lambda: os.rename(doc / "new.txt", doc / "renamed.txt"), doc / "renamed.txt"),
        (lambda: (doc / "renamed.txt").unlink(), doc / "renamed.txt"),
        (lambda: (doc / "sub/deeper").mkdir(parents=True), doc / "sub/deeper"),
    ]
    for step, path in steps:
        before = dirty.state().count
        step()
        eventually_sync(lambda before=before: dirty.state().count > before, what=f"change at {path.name}")
        assert str(path) in dirty.sample() or str(path.parent) in dirty.sample()
    assert len(calls) == 1  # clean → dirty once; the scheduler reads the rest when it wakes


def test_reading_files_is_not_a_change(watching, home):
    _, dirty, _ = watching
    for _ in range(5):
        (home / "Documents/report.txt").read_bytes()
    os.listdir(home / "Documents")
    _settle(dirty, home, 1)
    assert dirty.sample() == [str(home / "sentinel-1")]


def test_excluded_paths_are_ignored(watching, home):
    _, dirty, _ = watching
    (home / ".cache/app/blob").write_bytes(b"x" * 100)
    (home / ".local/share/Trash/files/old.txt").write_text("bin")
    (home / ".local/state/homesync/agent.json").write_text("{}")
    (home / "build/out.o").write_bytes(b"\0")
    (home / "build/nested").mkdir()
    (home / "build/nested/more.o").write_bytes(b"\0")
    (home / "venv-cache/wheel.whl").write_bytes(b"\0")
    _settle(dirty, home, 1)
    assert dirty.sample() == [str(home / "sentinel-1")] and dirty.state().count == 1


def test_a_new_marker_excludes_from_then_on(watching, home):
    _, dirty, _ = watching
    project = home / "project"
    project.mkdir()
    _settle(dirty, home, 1)
    (project / ".nobackup").touch()  # itself a change: the next backup leaves the directory out
    _settle(dirty, home, 2)
    count = dirty.state().count
    (project / "ignored.bin").write_bytes(b"x")
    _settle(dirty, home, 3)
    assert dirty.state().count == count + 1
    assert str(project / "ignored.bin") not in dirty.sample()


def test_moving_a_file_out_of_an_excluded_directory_counts(watching, home):
    _, dirty, _ = watching
    (home / ".cache/app/download.pdf").write_bytes(b"%PDF")
    _settle(dirty, home, 1)
    os.rename(home / ".cache/app/download.pdf", home / "Documents/download.pdf")
    eventually_sync(lambda: str(home / "Documents/download.pdf") in dirty.sample())


def test_a_burst_of_ten_thousand_creations_coalesces_into_one_backup(watching, home):
    _, dirty, calls = watching
    burst = home / "Documents/burst"
    burst.mkdir()
    for i in range(10_000):
        (burst / f"f{i:05}").touch()
    eventually_sync(lambda: dirty.state().count >= 10_001, timeout=20, what="10,000 events")
    state = dirty.state()
    assert len(calls) == 1
    assert len(dirty.sample()) <= 100 and len(dirty._buckets) <= 256

    settings = Settings(debounce=30)
    agent = AgentState(dirty=state, settings=settings, server=ServerView(True, state.last_change + 30),
                       network=NetworkView(on_corporate=True, via="Dock", since=0),
                       history=History(last_success=state.first_change - 3600,
                                       last_attempt=state.first_change - 3600))
    runs = [t for t in (state.last_change + s for s in (1, 10, 29, 30)) if isinstance(decide(agent, t), Run)]
    assert runs == [state.last_change + 30]
    dirty.clear_up_to(state.last_change + 30)
    assert not dirty.state().dirty


def test_clear_up_to_keeps_changes_made_during_the_job(watching, home):
    _, dirty, _ = watching
    (home / "Documents/before.txt").write_text("b")
    _settle(dirty, home, 1)
    time.sleep(0.01)
    job_started = time.time()
    time.sleep(1.1)  # beyond one bucket of the dirty set
    (home / "Documents/during.txt").write_text("d")
    eventually_sync(lambda: str(home / "Documents/during.txt") in dirty.sample())
    dirty.clear_up_to(job_started)
    assert dirty.sample() == [str(home / "Documents/during.txt")]
    assert dirty.state().count in (1, 2) and dirty.state().first_change > job_started  # created (and written)


def test_tree_larger_than_the_watch_limit_falls_back_to_scans(home):
    dirty = DirtySet()
    watcher = Watcher(home, dirty, _exclusions(home), max_user_watches=5, scan_interval=0.1)
    watcher.start()
    try:
        assert watcher.mode == "scan"
        assert "more than the inotify watch limit allows (fs.inotify.max_user_watches = 5)" in watcher.warnings[0]
        (home / ".cache/app/ignored").write_text("x")
        (home / "build/ignored.o").write_text("x")
        (home / "Documents/report.txt").write_text("changed while scanning")
        eventually_sync(lambda: dirty.state().count > 0, what="a scan to see the change")
        assert dirty.sample() == [str(home / "Documents")]
    finally:
        watcher.stop()
    assert watcher.mode == "stopped"


def test_a_new_scan_interval_applies_while_scanning(home):
    """A fleet policy's scan_interval reaches a running watcher (issue 19): from an hour to
    a tenth of a second, the next scan comes at once, and status's warning says the new one."""
    dirty = DirtySet()
    watcher = Watcher(home, dirty, _exclusions(home), max_user_watches=5, scan_interval=3600)
    watcher.start()
    try:
        assert watcher.mode == "scan" and watcher.warnings[0].endswith("scanning every 3600 s instead")
        (home / "Documents/report.txt").write_text("changed while scanning hourly")
        time.sleep(0.5)
        assert dirty.state().count == 0  # an hour to go
        watcher.set_scan_interval(0.1)
        eventually_sync(lambda: dirty.state().count > 0, timeout=5, what="a scan at the new interval")
        assert watcher.scan_interval == 0.1 and watcher.warnings[0].endswith("scanning every 0.1 s instead")
    finally:
        watcher.stop()
    assert watcher.mode == "stopped"


class _ExhaustedObserver:
    """An observer whose watches fail as inotify_add_watch does when the limit is reached."""

    def schedule(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def start(self):
        pass

    def stop(self):
        pass

    def is_alive(self):
        return False


def test_enospc_from_inotify_falls_back_to_scans(home):
    dirty = DirtySet()
    watcher = Watcher(home, dirty, _exclusions(home), scan_interval=3600,
                      observer_factory=_ExhaustedObserver)
    watcher.start()
    try:
        assert watcher.mode == "scan"
        assert watcher.warnings == ["inotify cannot watch the whole tree (inotify watch limit reached; "
                                    f"fs.inotify.max_user_watches = {watcher_module.read_max_user_watches()}): "
                                    "checking for changes by scanning every 3600 s instead"]
        (home / "Documents/new.txt").write_text("seen by the scan")
        assert watcher.scan_once() == [str(home / "Documents")]
        assert dirty.state().count == 1
        assert watcher.scan_once() == []
    finally:
        watcher.stop()


def test_watch_limit_exhausted_later_switches_to_scans(home, monkeypatch):
    dirty = DirtySet()
    watcher = Watcher(home, dirty, _exclusions(home), scan_interval=0.1,
                      room_check_interval=0)
    watcher.start()
    try:
        assert watcher.mode == "inotify"
        monkeypatch.setattr(watcher_module, "inotify_has_room", lambda path: False)
        (home / "Documents/many-new-dirs").mkdir()
        eventually_sync(lambda: watcher.mode == "scan", what="switch to scans")
        assert watcher.warnings[-1].startswith("new directories exhausted the inotify watch limit")
        assert dirty.state().possibly_dirty
        (home / "Documents/report.txt").write_text("seen by a scan")
        eventually_sync(lambda: str(home / "Documents") in dirty.sample(), what="a scan to see the change")
    finally:
        watcher.stop()


def test_the_real_limit_is_read_and_a_probe_finds_room(home):
    limit = watcher_module.read_max_user_watches()
    assert limit is None or limit > 0
    assert watcher_module.inotify_has_room(str(home))
    assert watcher_module.count_directories(str(home)) == 12  # home and the 11 made by the fixture


def test_lost_inotify_events_make_the_tree_possibly_dirty(watching, caplog):
    _, dirty, calls = watching
    # watchdog reports IN_Q_OVERFLOW only through its log, with these words.
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    assert dirty.state().possibly_dirty and dirty.possible_reason == "inotify dropped events (queue overflow)"
    assert len(calls) == 1


def test_an_idle_watcher_uses_no_cpu(watching):
    started = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - started < 0.05
