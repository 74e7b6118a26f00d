"""serve's post-session checks: one thread, one queue; the memory freed during a burst
of sessions is given back once the queue is empty, not after every check; stopping
stops the running check's borg."""

from __future__ import annotations

import subprocess
import threading
import time
from types import SimpleNamespace

from homesync import execute
from homesync_server import memory, session_checks
from homesync_server.index import event
from homesync_server.session_checks import SessionChecks
from homesync_server.index_store import open_url


class _Index:
    def pending_checks(self):
        return []

    def note_session(self, machine_id, started, ended):
        pass

    def sessions_ended_by(self, now):
        pass


def test_freed_memory_is_given_back_once_the_queue_is_empty(monkeypatch):
    gate, checked, released = threading.Event(), [], []

    def check(services, machine_id, on_start=None):
        gate.wait(10)
        checked.append(machine_id)
        return {"result": "good"}

    monkeypatch.setattr(session_checks.repository_check, "check_machine", check)
    monkeypatch.setattr(memory, "release_free", lambda: released.append(list(checked)) or True)
    checks = SessionChecks(SimpleNamespace(index=_Index()))
    checks.start()
    for machine_id in ("a", "b", "c"):
        checks.session_ended(machine_id, 0.0, 1.0)
    gate.set()
    for _ in range(200):
        if released:
            break
        threading.Event().wait(0.01)
    checks.stop()
    assert checked == ["a", "b", "c"] and released == [["a", "b", "c"]]


def test_tracing_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv(memory.ENVIRONMENT, raising=False)
    assert memory.install_trace() is False
    assert memory.resident_mb() > 0


def test_a_server_killed_during_a_session_checks_it_on_restart(tmp_path, monkeypatch):
    # found by the fault suite: the kill came before the session's end was recorded, the
    # restart had nothing pending, and an archive the CLI could not report stayed unindexed
    index = open_url(f'sqlite://{tmp_path / "i.sqlite"}')
    index.record_user("joe")
    index.add_machine({"id": "0" * 16, "owner": "joe", "name": "k", "hostname": "h", "public_key": "ssh-ed25519 A",
                       "enrolled": 1.0}, "k", event("enroll", "joe"))
    killed = SessionChecks(SimpleNamespace(index=index))
    killed.session_opened("0" * 16, 100.0)  # ... and the server dies here, before session_ended
    seen = []
    monkeypatch.setattr(session_checks.repository_check, "check_machine",
                        lambda services, machine_id, on_start=None: seen.append(services.index.history(machine_id)) or {"result": "good"})
    restarted = SessionChecks(SimpleNamespace(index=index))
    before = time.time()
    restarted.start()
    for _ in range(200):
        if seen:
            break
        threading.Event().wait(0.01)
    restarted.stop()
    (state,) = seen
    # the window runs from the session's start to the restart: an archive written in it is no claim outside it
    assert state["pending_since"] == 100.0 and state["pending_until"] >= before


def test_stopping_stops_the_running_checks_borg_and_leaves_it_pending(monkeypatch):
    # found by CI: a node's stop waited for a check whose borg waited for a repository
    # lock (60 s), past the drain's bound and the caller's patience
    started, outcomes = threading.Event(), []

    def check(services, machine_id, on_start=None):
        process = subprocess.Popen(["sleep", "60"], start_new_session=True)  # borg, waiting for a lock
        on_start(execute.Running(process))
        started.set()
        outcomes.append(process.wait(timeout=30))
        raise session_checks.Cancelled("borg list was stopped by signal 15")

    monkeypatch.setattr(session_checks.repository_check, "check_machine", check)
    checks = SessionChecks(SimpleNamespace(index=_Index()))
    checks.start()
    checks.session_ended("a", 0.0, 1.0)
    assert started.wait(10)
    began = time.monotonic()
    checks.stop()
    assert time.monotonic() - began < 5 and outcomes == [-15]
    assert not checks._thread.is_alive()
