"""The smaller parts: the time range options, storage growth, age buckets, the
archive totals the index keeps by trigger, and the [report] configuration."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as s

from homesync.errors import ConfigError, UsageError
from homesync_server import config as server_config
from homesync_server.config import Layout
from homesync_server.index import event
from homesync_server.reports import fleet, growth
from homesync_server.reports.period import parse_when, period
from homesync_server.index_store import open_url


def test_dates_times_and_ages():
    now = 1_000_000.0
    assert parse_when("7d", now) == now - 7 * 86400
    assert parse_when("12h", now) == now - 12 * 3600
    assert parse_when("2w", now) == now - 14 * 86400
    assert parse_when("2026-11-01", now) == datetime(2026, 11, 1).timestamp()
    assert parse_when("2026-11-01T08:00+01:00", now) == datetime.fromisoformat("2026-11-01T07:00+00:00").timestamp()
    for bad in ("yesterday", "7x", "", "2026-13-01"):
        with pytest.raises(UsageError):
            parse_when(bad, now)
    assert period(None, None, now) == (now - 30 * 86400, now + 1)
    with pytest.raises(UsageError):
        period("1d", "2d", now)


def test_growth_is_cumulative_per_user_biggest_first():
    rows = [{"owner": "joe", "bucket": 10, "added": 5}, {"owner": "ann", "bucket": 11, "added": 50},
            {"owner": "joe", "bucket": 12, "added": 1}]
    made = growth.growth(rows, {"joe": "Joe", "ann": ""}, 86400, now=13 * 86400 + 5)
    assert made.times == [b * 86400.0 for b in range(10, 14)]
    assert made.series == [("ann", [0, 50, 50, 50]), ("Joe", [5, 5, 6, 6])]
    assert growth.growth([], {}, 86400, 0).series == []
    assert growth.bucket_width(0, 30 * 86400) == 86400
    assert growth.bucket_width(0, 400 * 86400) == 7 * 86400
    assert growth.bucket_width(0, 4000 * 86400) == 30 * 86400


@given(s.one_of(s.none(), s.floats(min_value=0, max_value=1e9)))
def test_every_age_falls_in_exactly_one_bucket(age):
    label = fleet.bucket_of(age)
    if age is None:
        assert label == fleet.NEVER_BUCKET
        return
    uppers = dict(fleet.AGE_BUCKETS)
    lower = max([u for u in uppers.values() if u < uppers[label]], default=-1)
    assert lower < age <= uppers[label]


ARCHIVE = {"start": 1.0, "files": 1, "compressed_size": 1}


@settings(max_examples=40, deadline=None)
@given(s.lists(s.tuples(s.sampled_from(["success", "warning", "failed", "interrupted"]),
                        s.integers(0, 100), s.integers(0, 10**6), s.integers(0, 10**6)), max_size=8),
       s.sets(s.integers(0, 7)))
def test_archive_totals_follow_inserts_and_deletes(tmp_path_factory, archives, removed):
    index = open_url(f'sqlite://{tmp_path_factory.mktemp("i") / "i.sqlite"}')
    index.record_user("joe")
    machine = {"id": "0" * 16, "owner": "joe", "name": "n", "hostname": "h", "public_key": "k", "enrolled": 0.0}
    index.add_machine(machine, "n", event("enroll", "joe"))
    for n, (result, end, original, dedup) in enumerate(archives):
        index.add_archive("0" * 16, dict(ARCHIVE, name=f"a{n}", end=float(end), result=result,
                                         original_size=original, deduplicated_size=dedup), event("backup", "joe"))
    gone = [f"a{n}" for n in removed if n < len(archives)]
    if gone and hasattr(index, "remove_archives"):
        index.remove_archives("0" * 16, gone, event("prune", "admin"))
    else:
        gone = []
    kept = [a for n, a in enumerate(archives) if f"a{n}" not in gone]
    good = [a for a in kept if a[0] in ("success", "warning")]
    (row,) = index.fleet()
    assert row["archives"] == len(good)
    assert row["failed"] == sum(a[0] == "failed" for a in kept)
    assert row["deduplicated_size"] == sum(a[3] for a in kept)
    assert row["last_backup"] == (max(a[1] for a in good) if good else None)
    if good:
        assert row["original_size"] in {a[2] for a in good if a[1] == row["last_backup"]}
    index.close()


def test_report_configuration(tmp_path):
    layout = Layout(tmp_path)
    base = server_config.render_default("127.0.0.1:2222")
    layout.config_file.write_text(base)
    assert server_config.load(layout).report == server_config.ReportConfig(48.0, 168.0, "")
    text = base.replace("warn_age = 48", "warn_age = 12").replace(
        '# metrics_listen = "127.0.0.1:9861"', 'metrics_listen = "[::1]:9861"')
    layout.config_file.write_text(text)
    assert server_config.load(layout).report == server_config.ReportConfig(12.0, 168.0, "[::1]:9861")
    for bad, complaint in (("warn_age = 200", "warn_age < critical_age"),
                           ("warn_age = \"x\"", r"\[report\] warn_age must be a number"),
                           ('metrics_listen = "0.0.0.0:9861"', "loopback"), ('metrics_listen = "x"', "HOST:PORT")):
        layout.config_file.write_text(base.replace("warn_age = 48", bad))
        with pytest.raises(ConfigError, match=complaint):
            server_config.load(layout)
