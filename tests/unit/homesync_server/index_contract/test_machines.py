"""Contract: users and machines (names unique per owner, keys replaced and retired)."""

from __future__ import annotations

import pytest

from homesync.errors import ConflictError
from homesync_server.index import event

from .helpers import MACHINE, OTHER, archive, enrolled, machine


def test_users_are_recorded_once_with_their_newest_display_name(index):
    index.record_user("joe")
    index.record_user("joe", "Joe Bloggs")
    index.record_user("ann")
    assert [(u["name"], u["display_name"]) for u in index.users()] == [("ann", ""), ("joe", "Joe Bloggs")]
    assert index.display_names() == {"joe": "Joe Bloggs"}


def test_a_duplicate_name_leaves_neither_row_nor_audit_event(index):
    enrolled(index)
    with pytest.raises(ConflictError):
        index.add_machine(machine(OTHER, "JOE'S THINKPAD"), "joe's thinkpad", event("enroll", "joe", OTHER))
    assert index.machine_ids() == {MACHINE}
    assert [e["machine_id"] for e in index.audit_events(action="enroll")] == [MACHINE]
    assert index.name_taken("joe", "joe's thinkpad") and not index.name_taken("ann", "joe's thinkpad")


def test_machines_are_listed_by_owner_with_their_newest_counted_backup(index):
    enrolled(index)
    enrolled(index, OTHER, "Desk", "ann")
    index.add_archive(MACHINE, archive("a", 20.0), event("backup", "joe"))
    index.add_archive(MACHINE, archive("b", 30.0, observed=25.0), event("backup", "joe"))
    index.add_archive(MACHINE, archive("c", 40.0, "failed"), event("backup", "joe"))
    index.add_archive(MACHINE, archive("d", 50.0, flag="claims the future"), event("backup", "joe"))
    ann, joe = index.machines()
    assert (ann["owner"], joe["owner"]) == ("ann", "joe")
    assert (joe["archives"], joe["last_backup"], joe["last_size"], joe["flagged_archives"]) == (2, 25.0, 100, 1)
    assert joe["history_frozen"] is False
    assert [m["id"] for m in index.machines("ann")] == [OTHER]
    assert index.machine(MACHINE)["name"] == "Joe's Thinkpad" and index.machine("f" * 16) is None


def test_a_rename_onto_a_taken_name_changes_nothing(index):
    enrolled(index)
    enrolled(index, OTHER, "Desk")
    with pytest.raises(ConflictError):
        index.change_machine(OTHER, {"name": "Joe's Thinkpad", "name_key": "joe's thinkpad"},
                             event("machine_rename", "admin", OTHER))
    assert index.machine(OTHER)["name"] == "Desk"
    assert index.audit_events(action="machine_rename") == []
    index.change_machine(OTHER, {"name": "Desk 2", "name_key": "desk 2"}, event("machine_rename", "admin", OTHER))
    assert index.machine(OTHER)["name"] == "Desk 2"
    with pytest.raises(ValueError):
        index.change_machine(OTHER, {"public_key": "x"}, event("x", "admin"))


def test_a_replaced_key_and_a_retired_key_say_why_they_are_refused(index):
    enrolled(index)
    old = index.machine(MACHINE)["public_key"]
    index.replace_machine_key(MACHINE, "ssh-ed25519 NEW", "new-host", event("adopt", "joe", MACHINE))
    assert index.revoked_key(MACHINE, old)["why"] == "replaced"
    assert index.revoked_key(MACHINE, old)["hostname"] == "new-host"
    assert index.revoked_key(MACHINE, "ssh-ed25519 NEW") is None
    assert [k["public_key"] for k in index.replaced_keys()[MACHINE]] == [old]
    retire = event("machine_retire", "admin", MACHINE)
    index.change_machine(MACHINE, {"state": "retired"}, retire)
    found = index.revoked_key(MACHINE, "ssh-ed25519 NEW")
    assert found == {"why": "retired", "at": retire["at"], "name": "Joe's Thinkpad"}


def test_contact_and_agent_state_are_kept(index):
    enrolled(index)
    index.touch_machine(MACHINE, 99.0)
    index.set_agent_state(MACHINE, "paused", "on battery", "1.2")
    row = index.machine(MACHINE)
    assert (row["last_seen"], row["agent_state"], row["agent_reason"], row["agent_version"]) == \
        (99.0, "paused", "on battery", "1.2")


def test_an_imported_machine_comes_with_its_archives_and_replaced_keys(index):
    index.record_user("joe")
    rebuilt = dict(machine(), last_seen=30.0, state="active")
    keys = [{"public_key": "ssh-ed25519 OLD", "replaced_at": 5.0, "hostname": "old"}]
    index.import_machine(rebuilt, "joe's thinkpad", [archive("a", 20.0, observed=20.0), archive("b", 30.0)], keys)
    assert [a["name"] for a in index.archives(MACHINE)] == ["a", "b"]
    assert index.revoked_key(MACHINE, "ssh-ed25519 OLD")["why"] == "replaced"
    with pytest.raises(ConflictError):
        index.import_machine(dict(rebuilt, id=OTHER), "joe's thinkpad", [archive("c")])
    assert index.machine_ids() == {MACHINE} and index.archives(OTHER) == []
