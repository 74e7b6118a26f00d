"""Contract: post-session history, drills, legal holds and mass-change flags."""

from __future__ import annotations

from homesync_server.index import event

from .helpers import MACHINE, OTHER, archive, enrolled


def _drill(machine_id: str, started: float, result: str = "passed", failures=()) -> dict:
    return {"machine_id": machine_id, "started": started, "finished": started + 5, "archive": "a",
            "result": result, "failures": list(failures), "files": 3, "bytes": 100, "check_seconds": 1.0,
            "extract_seconds": 2.0, "throughput": 50.0, "rpo_seconds": 60.0, "hashed_files": 3}


def test_pending_sessions_widen_and_a_good_check_clears_them(index):
    enrolled(index)
    index.note_session(MACHINE, 10.0, 20.0)
    index.note_session(MACHINE, 5.0, 15.0)
    row = index.history(MACHINE)
    assert (row["pending_since"], row["pending_until"]) == (5.0, 20.0)
    assert index.pending_checks() == [MACHINE]
    index.record_good_check(MACHINE, "key", 7, 21.0, 20.0)
    row = index.history(MACHINE)
    assert (row["key"], row["transaction"], row["checked_at"], row["pending_since"]) == ("key", 7, 21.0, None)
    assert index.pending_checks() == []


def test_a_restart_ends_every_pending_window(index):
    enrolled(index)
    index.session_opened(MACHINE, 10.0)
    index.sessions_ended_by(50.0)
    assert index.history(MACHINE)["pending_until"] == 50.0
    index.record_good_check(MACHINE, "k", None, 51.0, 40.0)  # a check up to 40 leaves the window open
    assert index.pending_checks() == [MACHINE]


def test_a_history_freeze_flags_the_lost_archives_until_released(index):
    enrolled(index)
    index.add_archive(MACHINE, archive("a"), event("backup", "joe"))
    index.freeze_history(MACHINE, "rolled back", ["a"], 30.0, 30.0, event("history_freeze", "server", MACHINE))
    assert [m["machine_id"] for m in index.frozen_by_history(None)] == [MACHINE]
    assert index.frozen_by_history("ann") == []
    assert index.machines()[0]["history_frozen"] is True
    assert index.archive_observations(MACHINE)[0]["flag"] == "not in the repository after a history rollback"
    assert index.release_history(MACHINE, "admin", event("history_release", "admin", MACHINE))
    assert not index.release_history(MACHINE, "admin", event("history_release", "admin", MACHINE))
    assert index.frozen_by_history(None) == [] and len(index.audit_events(action="history_release")) == 1


def test_drills_newest_first_and_their_outcomes(index):
    enrolled(index)
    enrolled(index, OTHER, "Desk", "ann")
    index.add_drill(_drill(MACHINE, 10.0, "failed", ["x"]), event("drill", "server", MACHINE))
    index.add_drill(_drill(MACHINE, 20.0), event("drill", "server", MACHINE))
    index.add_drill(_drill(OTHER, 15.0, "failed", [{"path": "y"}]), event("drill", "server", OTHER))
    assert [d["started"] for d in index.drills(MACHINE)] == [20.0, 10.0]
    assert index.drills(MACHINE)[1]["failures"] == ["x"]
    assert [d["machine_id"] for d in index.drills(latest_only=True)] == [OTHER, MACHINE]
    counts, failed = index.drill_outcomes(None, 10)
    assert [(c["result"], c["machines"]) for c in counts] == [("failed", 1), ("passed", 1)]
    assert [(f["owner"], f["failures"]) for f in failed] == [("ann", [{"path": "y"}])]
    assert index.drill_outcomes("joe", 10)[1] == []


def test_holds_are_idempotent_and_lifted_with_their_event(index):
    enrolled(index)
    assert index.add_hold(MACHINE, "a", "admin", "court", event("hold_add", "admin", MACHINE))
    assert not index.add_hold(MACHINE, "a", "admin", "court", event("hold_add", "admin", MACHINE))
    assert index.add_hold(MACHINE, "*", "admin", "", event("hold_add", "admin", MACHINE))
    assert [(h["archive"], h["reason"]) for h in index.holds(MACHINE)] == [("*", ""), ("a", "court")]
    assert index.remove_holds(MACHINE, "a", event("hold_remove", "admin", MACHINE)) == 1
    assert index.remove_holds(MACHINE, None, event("hold_remove", "admin", MACHINE)) == 1
    assert index.remove_holds(MACHINE, None, event("hold_remove", "admin", MACHINE)) == 0
    assert index.holds() == []
    assert len(index.audit_events(action="hold_add")) == 2 and len(index.audit_events(action="hold_remove")) == 2


def test_a_mass_change_flag_replaces_the_last_and_freezes_until_released(index):
    enrolled(index)
    flag = {"machine_id": MACHINE, "archive": "a", "share": 0.9, "baseline": 0.1, "flagged_at": 10.0}
    index.flag_mass_change(flag, event("mass_change", "server", MACHINE))
    index.flag_mass_change(dict(flag, archive="b", flagged_at=20.0), event("mass_change", "server", MACHINE))
    (row,) = index.mass_change_flags()
    assert (row["archive"], row["frozen"]) == ("b", True)
    assert [f["archive"] for f in index.frozen_by_mass_change("joe")] == ["b"]
    assert index.release_mass_change(MACHINE, "admin", event("mass_change_release", "admin", MACHINE))
    assert not index.release_mass_change(MACHINE, "admin", event("mass_change_release", "admin", MACHINE))
    assert index.mass_change_flags() == []
    (released,) = index.mass_change_flags(MACHINE, include_released=True)
    assert (released["released_by"], released["frozen"]) == ("admin", False)
