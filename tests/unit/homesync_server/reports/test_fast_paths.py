"""What the formats write for any machine: JSON holding each row's fields (strict
JSON), tables aligned like str.ljust; every registered format offered by the parser;
and the report commands start without the SSH stack.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as s

from homesync_server.reports import fleet, table
from homesync_server.reports import json as json_format
from homesync_server.reports.activity import Activity
from homesync_server.reports.growth import Growth
from homesync_server.reports.model import Report
from homesync_server.reports.status import Policy

NOW = 1_795_000_000.0
numbers = s.one_of(s.none(), s.integers(-10**18, 10**18), s.floats(allow_nan=True, allow_infinity=True))
names = s.text(max_size=30)


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
