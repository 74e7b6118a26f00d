"""serve's post-session checks: one thread, one queue; the memory freed during a burst
of sessions is given back once the queue is empty, not after every check."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from homesync_server import memory, session_checks
from homesync_server.session_checks import SessionChecks


class _Index:
    def pending_checks(self):
        return []

    def note_session(self, machine_id, started, ended):
        pass


def test_freed_memory_is_given_back_once_the_queue_is_empty(monkeypatch):
    gate, checked, released = threading.Event(), [], []

    def check(services, machine_id):
        gate.wait(10)
        checked.append(machine_id)
        return {"result": "good"}

    monkeypatch.setattr(session_checks.session_check, "check_machine", check)
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
