"""The shortcuts that let a report of 100,000 machines run within 2 s write exactly
what the plain code they replace writes: sizes, ages, ISO times, JSON, aligned tables;
and the report commands start without the SSH stack.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as s

from homesync import console
from homesync_server.reports import csv as csv_format
from homesync_server.reports import fleet, table, text
from homesync_server.reports import json as json_format
from homesync_server.reports.activity import Activity
from homesync_server.reports.growth import Growth
from homesync_server.reports.model import Report
from homesync_server.reports.status import Policy

NOW = 1_795_000_000.0
numbers = s.one_of(s.none(), s.integers(-10**18, 10**18), s.floats(allow_nan=True, allow_infinity=True))
names = s.text(max_size=30)


@given(numbers)
def test_sizes_are_worded_like_the_console(n):
    assert text.human_size(n) == console.human_size(n)


@given(s.one_of(s.none(), s.floats(min_value=0, max_value=4e9), s.just(0.0), s.just(NOW), s.just(NOW - 60.0)))
def test_ages_are_worded_like_the_console(ts):
    assert text.age_teller(NOW)(ts) == console.human_age(ts, NOW)


@given(s.integers(-10**10, 10**11))
def test_iso_times_from_the_minute_cache_are_iso_time(second):
    (cells,) = csv_format._cells([_row(last_backup=second + 0.75)])
    assert cells[7] == csv_format.iso_time(second + 0.75)


def _row(**fields) -> fleet.MachineRow:
    values = dict(machine_id="0" * 16, owner="joe", display_name="Joe", machine="m", hostname="h", state="active",
                  status="OK", last_backup=100.5, age_seconds=10.25, archives=3, original_size=1000,
                  deduplicated_size=600, failed=1, last_seen=99.0, enrolled=1.0, agent_version="0.1.0",
                  agent_state="", agent_reason="", alarming=False)
    values.update(fields)
    return fleet.MachineRow(**values)


@given(s.lists(s.builds(_row, machine=names, owner=names, agent_reason=names, last_backup=numbers,
                        age_seconds=numbers, original_size=numbers, archives=s.integers(-2**63, 2**63 - 1),
                        alarming=s.booleans()),
               max_size=5))
def test_machines_json_holds_each_rows_fields(rows):
    report = Report(NOW, Policy(1.0, 2.0), None, "", rows, fleet.summarize(rows),
                    Activity(0.0, NOW, {}, []), Growth(0, [], []), sum(r.alarming for r in rows))
    written = json_format.render(report)
    assert written.endswith("}\n")
    assert json.loads(written, parse_constant=_not_json)["machines"] == [{k: _finite(v) for k, v in r.as_dict().items()} for r in rows]


def _not_json(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def _finite(value):
    """What strict JSON holds for value: a number that is not finite becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


@given(s.lists(s.lists(s.text(max_size=8), min_size=3, max_size=3), max_size=6))
def test_tables_align_like_ljust(rows):
    headers = ["A", "BB", "C C"]
    cells = [headers] + rows
    widths = [max(map(len, column)) for column in zip(*cells)]
    expected = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)
    assert table._table(headers, rows) == expected


def test_the_report_commands_start_without_paramiko(fleet_layout, tmp_path):
    code = ("import sys; from homesync_server import cli; "
            f"rc = cli.main(['report', '--data', {str(fleet_layout.data)!r}, '--output', {str(tmp_path / 'r')!r}]); "
            "print(rc, 'paramiko' in sys.modules, 'cryptography.hazmat.primitives.asymmetric' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["6", "False", "False"], done.stderr


def test_the_parser_offers_every_report_format():
    from homesync_server import cli
    from homesync_server.actions import report

    for fmt in report.FORMATS:
        assert cli.build_parser().parse_args(["report", "--format", fmt]).format == fmt
