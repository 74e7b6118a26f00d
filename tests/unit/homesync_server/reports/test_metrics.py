"""Prometheus metrics: the text format parsed back by a strict reader (families
declared once, before their samples; label values escaped), for any machine name;
the HTTP endpoint answers only GET /metrics."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as s

from homesync_server import metrics_http
from homesync_server.actions import report
from homesync_server.reports import fleet, metrics
from homesync_server.reports.activity import Activity
from homesync_server.reports.growth import Growth
from homesync_server.reports.model import Report
from homesync_server.reports.status import Policy

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = rf'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)")
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse the text format strictly; return samples by family; fail on anything odd."""
    assert text.endswith("\n")
    families: dict[str, list] = {}
    declared: dict[str, set] = {}
    current = None
    for line in text.split("\n")[:-1]:  # only \n ends a line (not \r, not U+2028)
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in families, f"{name} declared twice"
            families[name], declared[name], current = [], set(), name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current and kind in ("gauge", "counter")
        else:
            match = SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            name = match.group(1)
            assert name == current, f"{name} outside its family"
            labels = {k: re.sub(r'\\[\\"n]', lambda m: UNESCAPE[m.group(0)], v)
                      for k, v in re.findall(LABEL, match.group(2) or "")}
            key = tuple(sorted(labels.items()))
            assert key not in declared[name], f"duplicate series {name}{labels}"
            declared[name].add(key)
            families[name].append((labels, float(match.group(match.lastindex))))
    return families


def _metrics(rows, now: float) -> str:
    """Return the metrics of a report of these rows."""
    machines = rows if isinstance(rows, fleet.Fleet) else fleet.Fleet.of(rows)
    return metrics.render(Report(now, Policy(1.0, 2.0), None, "", machines, fleet.summarize(machines),
                                 Activity(0.0, now, {}, []), Growth(0, [], []), 0))


def _row(name: str, owner: str = "joe", age: float | None = 10.0) -> fleet.MachineRow:
    return fleet.MachineRow("0" * 16, owner, "Joe", name, "h", "active", "OK", None if age is None else 100.0,
                            age, 3, 1000, 600, 1, 99.0, 1.0, "0.1.0", "", "", False)


@given(s.text(max_size=40), s.text(min_size=1, max_size=20))
def test_any_machine_or_owner_name_round_trips_through_the_text_format(name, owner):
    rows = [_row(name, owner)]
    families = parse(_metrics(rows, 123.0))
    (labels, value), = families["homesync_machine_info"]
    assert labels == {"machine": "0" * 16, "name": name, "owner": owner, "hostname": "h",
                      "agent_version": "0.1.0"} and value == 1
    (labels, value), = families["homesync_machine_last_backup_timestamp_seconds"]
    assert labels == {"machine": "0" * 16} and value == 100.0


def test_the_fleet_metrics(fleet_layout):
    services = report.Sources.open(fleet_layout)
    try:
        families = parse(report.metrics_text(services, time.time()))
    finally:
        services.close()
    by_status = {labels["status"]: v for labels, v in families["homesync_machines"]}
    assert by_status == {"critical": 1, "never": 1, "stale": 1, "owner_gone": 1, "ok": 1, "replaced": 0,
                         "retired": 1}
    ages = {labels["machine"]: v for labels, v in families["homesync_machine_backup_age_seconds"]}
    assert "d" * 16 not in ages and 3600 <= ages["a" * 16] < 3700
    assert {labels["machine"]: v for labels, v in families["homesync_machine_failed_backups"]}["a" * 16] == 1
    assert families["homesync_protected_ratio"][0][1] == pytest.approx(0.25)
    statuses = {labels["machine"]: labels["status"] for labels, _ in families["homesync_machine_status"]}
    assert statuses["c" * 16] == "critical"
    assert {labels["result"]: v for labels, v in families["homesync_drill_machines"]} == {"passed": 1, "failed": 1}
    assert families["homesync_mass_change_frozen_machines"] == [({}, 1.0)]
    assert time.time() - families["homesync_drill_newest_timestamp_seconds"][0][1] < 11 * 3600
    info = {labels["machine"]: labels for labels, _ in families["homesync_machine_info"]}
    assert set(info) == set(statuses) and info["c" * 16]["owner"] == "ann"
    assert info["c" * 16]["name"] == "Ann's <b>Laptop</b>"


def test_the_endpoint_serves_only_get_metrics():
    endpoint = metrics_http.MetricsEndpoint("127.0.0.1", 0, lambda: "# HELP x y\n# TYPE x gauge\nx 1\n")
    endpoint.start()
    base = "http://%s:%d" % endpoint.address
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert parse(response.read().decode())["x"] == [({}, 1.0)]
        for path, method in (("/", "GET"), ("/metrics", "POST"), ("/other", "GET")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(base + path, method=method, data=b"" if method ==
                                                              "POST" else None), timeout=5)
            assert refused.value.code in (404, 501)
    finally:
        endpoint.stop()


def test_a_failing_producer_gives_500_and_the_endpoint_goes_on():
    calls = []

    def produce():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("index gone")
        return "ok 1\n"
    endpoint = metrics_http.MetricsEndpoint("127.0.0.1", 0, produce)
    endpoint.start()
    url = "http://%s:%d/metrics" % endpoint.address
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(url, timeout=5)
        assert failed.value.code == 500
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"ok 1\n"
    finally:
        endpoint.stop()


def test_cached_calls_at_most_once_per_interval():
    calls = []
    cached = metrics_http.Cached(lambda: calls.append(1) or len(calls), 60)
    assert cached() == cached() == 1


def test_policy_from_the_config_drives_the_metrics_statuses():
    rows = fleet.machine_rows([{"id": "0" * 16, "owner": "joe", "name": "n",
                                "hostname": "h", "state": "active", "last_backup": 0.0, "archives": 1,
                                "original_size": 1, "deduplicated_size": 1, "failed": 0, "last_seen": 0.0,
                                "enrolled": 0.0, "agent_version": "", "agent_state": "", "agent_reason": ""}],
                              {"joe": ""}, 7200.0, Policy.from_hours(1, 3))
    families = parse(_metrics(rows, 7200.0))
    assert {labels["status"]: v for labels, v in families["homesync_machines"]}["stale"] == 1
