"""The report on a small real index: statuses, names from the directory or the index,
leavers only when the directory answered, the summary, the activity, the exit status,
and every format parsed back."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from html.parser import HTMLParser

import pytest

from homesync.errors import IdentityUnavailableError
from homesync_server.actions import report
from homesync_server.reports import csv as csv_format
from homesync_server.reports import status as st
from tests.unit.homesync_server.reports.conftest import MACHINES


def _make(layout, **options):
    services = report.Sources.open(layout)
    try:
        return report.make(services, time.time(), **options)
    finally:
        services.close()


def _statuses(made) -> dict[str, str]:
    return {m.machine_id: m.status for m in made.machines}


def test_statuses_names_and_summary(fleet_layout):
    made = _make(fleet_layout)
    assert _statuses(made) == {"a" * 16: st.OK, "b" * 16: st.STALE, "c" * 16: st.CRITICAL, "d" * 16: st.NEVER,
                               "e" * 16: st.OWNER_GONE, "f" * 16: st.RETIRED}
    names = {m.owner: m.display_name for m in made.machines}
    assert names == {"joe": "Joe Bloggs", "ann": "Ann (indexed)", "leaver": "Lee Ver"}
    # c is critical; d never backed up although enrolled 400 h ago, past the critical 168 h
    assert [m.machine_id for m in made.machines if m.alarming] == ["c" * 16, "d" * 16]
    assert made.needs_attention == 2
    s = made.summary
    assert (s.expected, s.protected) == (4, 1)
    assert dict(s.age_buckets) == {"< 1 h": 0, "1 h – 1 d": 1, "1–2 d": 0, "2–7 d": 1, "1–4 weeks": 1,
                                   "> 4 weeks": 0, "never": 1}
    a = next(m for m in made.machines if m.machine_id == "a" * 16)
    assert (a.archives, a.failed, a.original_size, a.deduplicated_size) == (2, 1, 2000, 600)
    assert s.storage_total == 600 * 5 and s.storage_by_user[0][:2] == ("joe", "Joe Bloggs")
    assert [series[0] for series in made.growth.series] == ["Joe Bloggs", "Ann (indexed)", "Lee Ver"]


def test_the_directory_being_down_never_flags_leavers_nor_fails(fleet_layout, monkeypatch):
    def down(self):
        raise IdentityUnavailableError("directory unavailable: ldap://x: timed out")
    monkeypatch.setattr("homesync_server.identity.local.LocalIdentity.people", down)
    made = _make(fleet_layout)
    assert _statuses(made)["e" * 16] == st.OK  # its owner is not known to be gone
    assert "timed out" in made.directory_error
    assert {m.owner: m.display_name for m in made.machines}["joe"] == "Joe B. (indexed)"


def test_activity_lists_restores_and_releases_but_not_backups(fleet_layout):
    made = _make(fleet_layout)
    actions = [e.action for e in made.activity.events]
    assert "backup" not in actions and "backup" not in made.activity.counts
    restore = next(e for e in made.activity.events if e.action == "restore")
    assert (restore.actor, restore.machine, restore.owner) == ("joe", MACHINES[0][2], "joe")
    assert "new-host" in restore.what and "12 files" in restore.what
    assert made.activity.counts["passphrase_release"] == 1 and made.activity.counts["login_failed"] == 1
    only_ann = _make(fleet_layout, user="ann")
    assert all("ann" in (e.actor, e.owner) for e in only_ann.activity.events)
    assert {e.actor for e in only_ann.activity.events} == {"ann", "system"}  # system: the mass change on hers
    assert {m.owner for m in only_ann.machines} == {"ann"}
    nothing = _make(fleet_layout, since="2000-01-01", until="2000-02-01")
    assert nothing.activity.events == [] and nothing.activity.counts == {}


def test_the_exit_status_is_alarming_when_a_machine_is_critical_and_the_file_is_written_whole(fleet_layout, tmp_path):
    out = tmp_path / "out" / "report.json"
    out.parent.mkdir()
    assert report.report(fleet_layout, "json", str(out), None, None, None) == report.EXIT_ALARMING
    assert json.loads(out.read_text())["alarming"] == 2
    assert os.listdir(out.parent) == ["report.json"]
    assert report.report(fleet_layout, "json", str(out), "joe", None, None) == 0


def test_json_parses_with_every_part(fleet_layout, capsys):
    report.report(fleet_layout, "json", None, None, None, None)
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"generated_at", "policy", "summary", "machines", "activity", "storage_over_time"}
    assert len(doc["machines"]) == len(MACHINES)
    assert doc["summary"]["protected_share"] == pytest.approx(0.25)
    assert doc["policy"] == {"warn_age_hours": 48.0, "critical_age_hours": 168.0}


def test_csv_parses_and_defuses_formulas(fleet_layout):
    rows = list(csv.DictReader(io.StringIO(csv_format.render(_make(fleet_layout)))))
    assert sorted(r["machine_id"] for r in rows) == sorted(m[0] for m in MACHINES)
    assert {r["machine_id"]: r["status"] for r in rows}["c" * 16] == "CRITICAL"
    assert {r["machine_id"]: r["machine"] for r in rows}["b" * 16] == "'=HYPERLINK(\"http://x\")"
    assert rows[0]["last_backup"].endswith("Z") and "T" in rows[0]["last_backup"]
    never = next(r for r in rows if r["machine_id"] == "d" * 16)
    assert never["last_backup"] == "" and never["age_seconds"] == ""
    assert {r["policy_version"] for r in rows} == {""} and {r["policy_lagging"] for r in rows} == {""}  # no policy


def test_csv_ends_each_row_with_the_machines_fleet_policy(fleet_layout):
    """The CSV has the report's fleet-policy part too (issue 19): the version each machine
    applied and whether it lags, as the table, JSON and HTML say it."""
    import dataclasses
    from homesync_server.reports.policy import FleetPolicy
    report = _make(fleet_layout)
    ids = sorted(report.machines["machine_id"])
    part = FleetPolicy(3, 1000.0, {ids[0]: 3, ids[1]: 2}, [{"id": ids[1], "applied": 2, "last_seen": 2000.0}])
    rows = {r["machine_id"]: r for r in csv.DictReader(io.StringIO(csv_format.render(
        dataclasses.replace(report, fleet_policy=part))))}
    assert (rows[ids[0]]["policy_version"], rows[ids[0]]["policy_lagging"]) == ("3", "False")
    assert (rows[ids[1]]["policy_version"], rows[ids[1]]["policy_lagging"]) == ("2", "True")
    assert all((rows[i]["policy_version"], rows[i]["policy_lagging"]) == ("", "") for i in ids[2:])
    assert list(rows[ids[0]])[-2:] == ["policy_version", "policy_lagging"]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href")
                       or (k != "xmlns" and (v or "").startswith(("http", "//")))]

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_self_contained_and_escapes_names(fleet_layout):
    page = report.FORMATS["html"].render(_make(fleet_layout))
    parser = _Page()
    parser.feed(page)
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert parser.links == []
    assert parser.tags.count("svg") == 2 and "style" in parser.tags
    assert "<b>Laptop</b>" not in page and "Ann's <b>Laptop</b>" in "".join(parser.text)
    assert "@media print" in page
    assert "url(" not in page


def test_table_shows_the_fleet_and_keeps_control_characters_out(fleet_layout):
    text = report.FORMATS["table"].render(_make(fleet_layout))
    assert "\x1b" not in text and "not on the corporate network\N{REPLACEMENT CHARACTER}" in text
    assert text.index("CRITICAL") < text.index("RETIRED")
    assert "protected within policy: 1 of 4 machines (25%)" in text


def test_drills_and_mass_change_freezes_are_in_every_format(fleet_layout, capsys):
    made = _make(fleet_layout)
    assert made.assurance.drilled == {"failed": 1, "passed": 1}  # b's newest drill failed, a's passed
    (failed,) = made.assurance.not_passed
    assert (failed["machine_id"], failed["why"]) == ("b" * 16, "extract: 2 files differ <\x1b[2J>")
    assert [f["machine_id"] for f in made.assurance.frozen] == ["c" * 16]
    assert _make(fleet_layout, user="ann").assurance.drilled == {}
    assert [f["owner"] for f in _make(fleet_layout, user="ann").assurance.frozen] == ["ann"]
    text = report.FORMATS["table"].render(made)
    assert "drills: 2 machines drilled" in text and "1 failed, 1 passed" in text and "more that did not" not in text
    fewer = dataclasses.replace(made, assurance=dataclasses.replace(made.assurance, not_passed=[]))
    assert "… and 1 more that did not pass" in report.FORMATS["table"].render(fewer)
    assert "The newest 0 of 1 that did not pass are listed" in report.FORMATS["html"].render(fewer)
    assert "not passed: joe's =HYPERLINK" in text and "\x1b" not in text
    assert "pruning frozen by a mass change: ann's Ann's <b>Laptop</b> (c-1: 92% new, usually 3%" in text
    page = report.FORMATS["html"].render(made)
    assert "Recovery drills and mass changes" in page and "2 files differ &lt;" in page
    assert "Ann&#x27;s &lt;b&gt;Laptop&lt;/b&gt;" in page and "<b>Laptop" not in page
    report.report(fleet_layout, "json", None, None, None, None)
    doc = json.loads(capsys.readouterr().out)
    assert doc["drills"]["machines_by_result"] == {"failed": 1, "passed": 1}
    assert doc["frozen_by_mass_change"][0]["share"] == 0.92
