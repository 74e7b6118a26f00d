"""Contract: restore grants, login throttling and the fleet policy, shared by every process."""

from __future__ import annotations

import threading

import pytest

from homesync_server import logins
from homesync_server.logins import ACCOUNT

from homesync_server.index import event

from .helpers import MACHINE, enrolled


def _grant(key: str = "ssh-ed25519 ONE", granted: float = 100.0, **more) -> dict:
    return dict({"public_key": key, "repository_id": MACHINE, "user": "joe", "template": 0, "granted": granted,
                 "expires": granted + 3600, "idle": 60.0}, **more)


def test_a_grant_lives_until_idle_or_expired_and_a_used_one_is_audited_when_it_lapses(index):
    index.add_grant(_grant())
    assert index.live_grant("ssh-ed25519 ONE", MACHINE, 150.0)["user"] == "joe"
    assert index.live_grant("ssh-ed25519 ONE", MACHINE, 161.0) is None  # idle too long
    index.touch_grant("ssh-ed25519 ONE", 150.0)
    assert index.live_grant("ssh-ed25519 ONE", MACHINE, 200.0) is not None
    assert index.grant("ssh-ed25519 ONE", "c" * 16) is None
    index.add_grant(_grant("ssh-ed25519 TWO"))
    lapsed = index.end_lapsed_grants(300.0)
    assert [(g["user"], g["last_used"]) for g in lapsed] == [("joe", 150.0)]
    assert index.grant("ssh-ed25519 ONE", MACHINE) is None and index.grant("ssh-ed25519 TWO", MACHINE) is None
    assert [e["machine_id"] for e in index.audit_events(action="restore_unreported")] == [MACHINE]


def test_a_grant_is_replaced_for_the_same_key_and_revoked_per_user(index):
    index.add_grant(_grant())
    index.add_grant(_grant(template=1, user="ann"))
    assert index.grant("ssh-ed25519 ONE", MACHINE)["user"] == "ann"
    index.add_grant(_grant("ssh-ed25519 TWO"))
    assert index.revoke_grants(MACHINE, "joe") == 1
    assert index.revoke_grants(MACHINE) == 1 and index.revoke_grants(MACHINE) == 0


def test_one_key_of_a_users_grants_is_revoked_alone(index):
    index.add_grant(_grant("ssh-ed25519 ONE"))
    index.add_grant(_grant("ssh-ed25519 TWO"))
    assert index.revoke_grants(MACHINE, "ann", "ssh-ed25519 ONE") == 0  # another user's key: nothing
    assert index.revoke_grants(MACHINE, "joe", "ssh-ed25519 ONE") == 1
    assert index.grant("ssh-ed25519 ONE", MACHINE) is None and index.grant("ssh-ed25519 TWO", MACHINE) is not None


def _attempt(index, name: str, address: str, now: float | None = None):
    return index.throttle(logins.keys(name, address),
                          lambda r, t: (v := logins.reserve(*r, t, name, "x"), v.events),
                          logins.forget_if_quiet, now=now)


def test_parallel_attempts_from_two_processes_allow_only_the_limit(opener, index):
    indexes, results, start = [index, opener()], [], threading.Barrier(20)

    def attempt(n: int) -> None:
        start.wait()
        results.append(_attempt(indexes[n % 2], "joe", f"10.0.0.{n}").allowed)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == ACCOUNT.attempts
    account = [r for r in opener().login_records() if r.key == "account:joe"][0]
    assert account.attempts == ACCOUNT.attempts and account.refused == 20 - ACCOUNT.attempts
    assert len(index.audit_events(action="login_failed")) == 1


def test_a_block_outlives_a_restart(opener, index):
    for _ in range(ACCOUNT.attempts + 1):
        _attempt(index, "joe", "10.0.0.1", now=1000.0)
    index.close()
    again = opener()
    assert not _attempt(again, "joe", "10.0.0.2", now=1001.0).allowed


def test_policy_versions_are_numbered_and_audited(index):
    assert index.policy_version() is None
    first = index.add_policy_version("site", "", {"site": {"a": 1}}, ["a"], "admin", event("policy", "admin"))
    second = index.add_policy_version("user", "joe", {"users": {"joe": {}}}, [], "admin", event("policy", "admin"))
    assert (first, second) == (1, 2)
    assert index.policy_version()["layers"] == {"users": {"joe": {}}}
    assert [v["changed"] for v in index.policy_versions()] == [["a"], []]
    assert [e["detail"]["version"] for e in index.audit_events(action="policy")] == [1, 2]


def test_imported_policy_versions_keep_their_numbers_and_the_next_follows(index):
    versions = [{"version": 4, "at": 1.5, "actor": "ann", "scope": "site", "target": "", "layers": {"site": {"a": 1}},
                 "changed": ["a"]},
                {"version": 7, "at": 2.5, "actor": "bob", "scope": "group", "target": "staff",
                 "layers": {"groups": {"staff": {}}}, "changed": []}]
    members = [{"group_name": "staff", "user": "joe"}]
    index.import_policy(versions, members)
    assert index.policy_versions() == versions and index.group_members() == members
    with pytest.raises(Exception):  # numbers are kept, so the same versions again collide
        index.import_policy(versions[1:], [{"group_name": "staff", "user": "ann"}])
    assert index.policy_versions() == versions and index.group_members() == members, "a failed import wrote something"
    index.import_policy([], members)  # members already there stay as they are
    assert index.add_policy_version("site", "", {}, [], "admin", event("policy", "admin")) == 8


def test_group_members_and_remembered_groups(index):
    assert index.set_group_member("staff", "joe", True, event("group_add", "admin"))
    assert not index.set_group_member("staff", "joe", True, event("group_add", "admin"))
    index.set_group_member("admins", "joe", True, event("group_add", "admin"))
    index.set_group_member("staff", "ann", True, event("group_add", "admin"))
    assert index.group_members("joe") == [{"group_name": "admins", "user": "joe"},
                                          {"group_name": "staff", "user": "joe"}]
    assert index.set_group_member("staff", "joe", False, event("group_remove", "admin"))
    assert [m["user"] for m in index.group_members()] == ["joe", "ann"]
    assert index.remembered_groups("joe") is None
    index.remember_groups("joe", ["b", "a"], 1.0)
    index.remember_groups("joe", ["c"], 2.0)
    assert index.remembered_groups("joe") == ["c"]


def test_a_machine_reports_the_policy_it_applied(index):
    enrolled(index)
    index.policy_contact(MACHINE, 3, 10.0)
    index.policy_contact(MACHINE, 3, 20.0)  # the same version: applied stays when it was first seen
    index.policy_contact(MACHINE, None, 30.0)
    state = index.policy_states()[MACHINE]
    assert (state["policy_version"], state["policy_applied"], state["policy_contact"]) == (3, 10.0, 30.0)
