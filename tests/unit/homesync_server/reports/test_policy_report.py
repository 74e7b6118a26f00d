"""The report's fleet-policy part: each machine's applied version, and the machines that
have not applied the newest within a day of reaching the server."""

from __future__ import annotations

from homesync_server.reports.policy import DAY, fleet_policy

NEWEST = {"version": 4, "at": 1000.0}


def _state(version, seen, state="active", owner="joe"):
    return {"owner": owner, "state": state, "policy_version": version, "policy_contact": seen, "last_seen": seen}


def _columns(states: dict, user: str | None = None) -> dict[str, list]:
    """The machines (of user's, or all) column by column, as Index.fleet_columns gives them."""
    chosen = [(machine_id, s) for machine_id, s in states.items() if user is None or s["owner"] == user]
    columns = {"id": [machine_id for machine_id, _ in chosen]}
    for name in ("state", "policy_version", "policy_contact", "last_seen"):
        columns[name] = [s[name] for _, s in chosen]
    return columns


def test_machines_that_reached_the_server_and_still_run_an_older_version_are_flagged():
    states = {"current": _state(4, 1000 + DAY + 5), "behind": _state(3, 1000 + 5), "away": _state(2, 900),
              "retired": _state(1, 2000, state="retired"), "anns": _state(1, 2000, owner="ann")}
    report = fleet_policy(NEWEST, _columns(states), now=1000 + DAY + 10)
    assert report.applied == {"current": 4, "behind": 3, "away": 2, "anns": 1}
    assert [m["id"] for m in report.lagging] == ["anns", "behind"]
    assert [m["id"] for m in fleet_policy(NEWEST, _columns(states, "joe"), 1000 + DAY + 10).lagging] == ["behind"]


def test_within_a_day_nobody_is_flagged_and_without_a_policy_there_is_nothing():
    states = {"behind": _state(3, 1005)}
    assert fleet_policy(NEWEST, _columns(states), now=1000 + DAY - 1).lagging == []
    assert fleet_policy(None, _columns(states), now=5 * DAY).as_dict()["fleet_policy"]["newest_version"] == 0
