"""Retention: the pure prune decision against borg's own prune_split (as an oracle, on
any archive time series), legal holds, checkpoints, and the [retention] settings."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from homesync_server import retention
from homesync_server.retention import HOLD_ALL, Archive, Policy, plan

T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())


@pytest.fixture(autouse=True, scope="module")
def utc():
    """borg's oracle counts periods in local time; homesync runs borg with TZ=UTC."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@st.composite
def series(draw, max_size: int = 40) -> list[Archive]:
    """Archive time series at every scale (minutes to months apart), some checkpoints."""
    scale = draw(st.sampled_from([60, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400]))
    offsets = draw(st.lists(st.integers(0, 400), unique=True, max_size=max_size))
    checkpoint = draw(st.lists(st.booleans(), min_size=len(offsets), max_size=len(offsets)))
    return [Archive(f"a{i}" + (".checkpoint" if cp else ""), float(T0 + off * scale))
            for i, (off, cp) in enumerate(zip(offsets, checkpoint))]


counts = st.integers(-1, 6)
policies = st.builds(Policy, counts, counts, counts, counts, counts).filter(Policy.keeps_something)


def borg_keeps(archives: list[Archive], policy: Policy) -> set[str]:
    """What borg 1.4's do_prune keeps, computed with its own prune_split."""
    from borg.helpers import PRUNING_PATTERNS, prune_split
    items = [SimpleNamespace(id=a.name, name=a.name, ts=datetime.fromtimestamp(a.time, timezone.utc))
             for a in archives]
    newest_first = sorted(items, key=lambda a: a.ts, reverse=True)
    checkpoints = [a for a in newest_first if retention.is_checkpoint(a.name)]
    complete = [a for a in newest_first if a not in checkpoints]
    keep = {newest_first[0].name} if newest_first and newest_first[0] in checkpoints else set()
    kept_because: dict = {}
    for rule in PRUNING_PATTERNS:
        n = getattr(policy, rule, None)
        if n is not None:
            keep |= {a.name for a in prune_split(complete, rule, n, kept_because)}
    return keep


@settings(max_examples=400, deadline=None)
@given(series(), policies)
def test_prune_keeps_exactly_what_borg_prune_keeps(archives, policy):
    decided = plan(archives, policy)
    assert set(decided.keep) == borg_keeps(archives, policy)
    assert set(decided.keep) | set(decided.delete) == {a.name for a in archives}
    assert not set(decided.keep) & set(decided.delete)


@settings(max_examples=300, deadline=None)
@given(series(), policies, st.data())
def test_held_archives_are_never_deleted_and_change_nothing_else(archives, policy, data):
    held = data.draw(st.sets(st.sampled_from([a.name for a in archives]))) if archives else set()
    decided = plan(archives, policy, held)
    assert not held & set(decided.delete)
    assert set(decided.delete) == set(plan(archives, policy).delete) - held
    assert all(decided.keep[name] != "" for name in held)


@given(series(), policies)
def test_a_hold_on_everything_deletes_nothing(archives, policy):
    assert plan(archives, policy, {HOLD_ALL}).delete == ()


@given(series(), policies)
def test_the_newest_complete_archive_is_always_kept(archives, policy):
    complete = [a for a in archives if not retention.is_checkpoint(a.name)]
    if complete:
        assert max(complete, key=lambda a: a.time).name in plan(archives, policy).keep


@given(series(), policies)
def test_deleted_archives_are_listed_oldest_first(archives, policy):
    times = {a.name: a.time for a in archives}
    deleted = plan(archives, policy).delete
    assert [times[n] for n in deleted] == sorted(times[n] for n in deleted)


def test_daily_and_weekly_over_a_month_of_hourly_backups():
    archives = [Archive(f"h{i:03d}", float(T0 + i * 3600)) for i in range(24 * 30)]  # Jan 2024, hourly
    decided = plan(archives, Policy(hourly=0, daily=3, weekly=2, monthly=0, yearly=0))
    # the last backup of Jan 30, 29, 28 (daily), then of the two ISO weeks before (weekly: Jan 21 and 14)
    assert sorted(decided.keep, key=lambda n: int(n[1:])) == ["h335", "h503", "h671", "h695", "h719"]
    assert decided.keep["h719"] == "daily #1" and decided.keep["h335"] == "weekly #2"


def test_only_a_checkpoint_newer_than_every_complete_archive_is_kept():
    archives = [Archive("a.checkpoint", T0), Archive("b", T0 + 10), Archive("c.checkpoint", T0 + 20)]
    decided = plan(archives, Policy(hourly=0, daily=1, weekly=0, monthly=0, yearly=0))
    assert decided.keep == {"b": "daily #1", "c.checkpoint": "newest checkpoint"}
    assert decided.delete == ("a.checkpoint",)


def test_a_policy_that_keeps_nothing_is_refused():
    with pytest.raises(ValueError):
        plan([Archive("a", T0)], Policy(0, 0, 0, 0, 0))


def test_settings_from_toml_with_a_user_override_and_every_problem_at_once():
    problems: list[str] = []
    settings_ = retention.settings_from_toml({
        "keep_daily": 7, "keep_hourly": 0, "mass_change_share": 0.6,
        "users": {"joe": {"keep_daily": 30}, "ann": {"keep_daily": "x"}}}, problems)
    assert settings_.site == Policy(hourly=0, daily=7)
    assert settings_.policy_for("joe") == Policy(hourly=0, daily=30)
    assert settings_.policy_for("nobody-special") == settings_.site
    assert settings_.mass_change_share == 0.6
    assert problems == ["[retention.users.ann] keep_daily must be a whole number, -1 (every period) or more"]
    problems = []
    retention.settings_from_toml({"keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0,
                                  "keep_dayly": 3, "mass_change_factor": 0.5}, problems)
    assert problems == ["[retention] unknown key 'keep_dayly'",
                        "[retention] keeps nothing: set at least one keep_* above 0",
                        "[retention] mass_change_factor must be a number from 1 to 1000"]


def test_weeks_are_iso_weeks_across_the_new_year():
    day = 86400
    sunday = datetime(2024, 12, 29, 12, tzinfo=timezone.utc).timestamp()  # ISO 2024-W52
    archives = [Archive("sun", sunday), Archive("mon", sunday + day), Archive("wed", sunday + 3 * day)]
    decided = plan(archives, Policy(hourly=0, daily=0, weekly=2, monthly=0, yearly=0))
    assert decided.delete == ("mon",)  # Monday Dec 30 and Wednesday Jan 1 are both in 2025-W01


def test_server_toml_carries_the_policy_and_reports_its_problems_with_the_file_name(tmp_path):
    from homesync.errors import ConfigError
    from homesync_server import config
    layout = config.Layout(tmp_path)
    layout.config_file.write_text(config.render_default("127.0.0.1:2222"))
    assert config.load(layout).retention == retention.Settings()
    layout.config_file.write_text(config.render_default("127.0.0.1:2222") + "[retention.users.joe]\nkeep_daily = 30\n")
    assert config.load(layout).retention.policy_for("joe").daily == 30
    layout.config_file.write_text('[retention]\nkeep_daily = -2\n')
    with pytest.raises(ConfigError, match=r"server.toml: \[retention\] keep_daily must be a whole number"):
        config.load(layout)
