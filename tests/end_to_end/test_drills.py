"""Drills end to end on real repositories made by the real agent through the real
server: a healthy repository passes; a corrupted segment file and an archive missing
files the agent reported fail clearly; no drill leaves a lock or a scratch file."""

from __future__ import annotations

import json

import pytest

from homesync_server import config as server_config
from homesync_server.config import Layout
from tests.support.homesync_server import RunningServer
from tests.support.repositories import corrupt_file_data, enrolled_with_backups, index_write


def drill(server: RunningServer, *args: str):
    done = server.cli("drill", *args, "--json")
    return done, (json.loads(done.stdout) if done.stdout.strip() else None)


def assert_no_lock_and_no_scratch(server: RunningServer, machine_id: str) -> None:
    repo = server.data / "repos" / machine_id
    assert not (repo / "lock.exclusive").exists() and not (repo / "lock.roster").exists()
    assert list(server_config.load(Layout(server.data)).drill.scratch.iterdir()) == []


@pytest.fixture(scope="module")
def anns(homesync_server, computer_factory_module):
    """ann's one machine, backed up once: (machine id, the backup's report)."""
    machine_id, _, (report,) = enrolled_with_backups(homesync_server, computer_factory_module, "ann", "Ann's Drill", 21)
    return machine_id, report


def test_a_healthy_repository_passes_with_rto_and_rpo(homesync_server, anns):
    machine_id, report = anns
    output = homesync_server.data.parent / "drill.json"
    done = homesync_server.cli("drill", "--user", "ann", "--json", "--output", str(output))
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(output.read_text())
    assert result["result"] == "passed" and result["failures"] == []
    assert result["archive"] == report["name"] and result["expected_from"] == "agent report"
    assert (result["files"], result["bytes"]) == (report["files"], report["original_size"])
    assert result["hashed_files"] >= 10
    assert 0 <= result["rpo_seconds"] < 600 and result["extract_seconds"] > 0 and result["throughput"] > 0
    assert_no_lock_and_no_scratch(homesync_server, machine_id)
    rows = homesync_server.index_rows(f"SELECT result, files FROM drills WHERE machine_id = '{machine_id}'")
    assert rows[-1] == ("passed", report["files"])
    events = homesync_server.index_rows(f"SELECT action, detail FROM audit WHERE machine_id = '{machine_id}'")
    assert ("passphrase_release", '{"to": "drill"}') in events
    assert any(action == "drill" and json.loads(detail)["result"] == "passed" for action, detail in events)


def test_an_archive_missing_files_the_agent_reported_fails(homesync_server, anns):
    machine_id, report = anns
    index_write(homesync_server, f"UPDATE archives SET files = files + 5 WHERE machine_id = '{machine_id}'")
    try:
        done, (result,) = drill(homesync_server, "--machine", machine_id)
    finally:
        index_write(homesync_server, f"UPDATE archives SET files = files - 5 WHERE machine_id = '{machine_id}'")
    assert done.returncode == 21
    assert result["result"] == "failed" and [f["stage"] for f in result["failures"]] == ["verify"]
    assert f"{report['files'] + 5} files were reported at backup time" in result["failures"][0]["message"]
    assert "(5 missing)" in done.stderr and machine_id in done.stderr and report["name"] in done.stderr
    assert_no_lock_and_no_scratch(homesync_server, machine_id)


def test_a_sample_prefers_the_never_drilled_and_a_corrupted_segment_fails(homesync_server, anns, computer_factory):
    assert homesync_server.cli("drill", "--machine", anns[0]).returncode in (0, 21)
    machine_id, _, _ = enrolled_with_backups(homesync_server, computer_factory, "joe", "Joe's Corrupt", 23)
    done, results = drill(homesync_server, "--sample", "1")
    assert done.returncode == 0, done.stderr
    assert [(r["machine_id"], r["result"]) for r in results] == [(machine_id, "passed")]

    corrupted = corrupt_file_data(homesync_server, machine_id, 64)
    done, (result,) = drill(homesync_server, "--machine", machine_id)
    assert done.returncode == 21, done.stderr
    stages = {f["stage"]: f["message"] for f in result["failures"]}
    assert f"segment {corrupted.name}" in stages["check"] and str(corrupted.parents[2]) in stages["check"]
    assert "integrity" in stages["extract"].lower()
    assert "drill failed on 1 of 1 machines" in done.stderr and "check: borg check found problems" in done.stderr
    assert_no_lock_and_no_scratch(homesync_server, machine_id)


def test_a_selection_that_names_nothing_is_an_error(homesync_server):
    done = homesync_server.cli("drill", "--machine", "0" * 16)
    assert done.returncode == 10 and "no machine" in done.stderr
    assert homesync_server.cli("drill").returncode == 2  # one of --machine, --user, --sample, --all


def test_a_machine_never_backed_up_is_a_finding_of_every_drill(homesync_server, anns, computer_factory):
    laptop = computer_factory()
    assert laptop.enroll(homesync_server, "ann", "Ann's Never").returncode == 0
    never = next(m["id"] for m in homesync_server.cli_json("machines", "--user", "ann") if m["name"] == "Ann's Never")
    for selection in (("--sample", "1"), ("--user", "ann")):
        done, results = drill(homesync_server, *selection)
        assert done.returncode == 21, done.stderr
        (result,) = [r for r in results if r["machine_id"] == never]
        assert result["result"] == "failed" and result["never_backed_up"] is True
        assert [(f["stage"], f["message"].split(":")[0]) for f in result["failures"]] == [("list", "never backed up")]
        assert never in done.stderr and "never backed up" in done.stderr
        assert f"WARNING homesync_server.actions.drill: drill of {never}: failed at list: never backed up" in done.stderr
    assert any(r["machine_id"] == anns[0] for r in results)  # the others are drilled as before
    report = json.loads(homesync_server.cli("report", "--json").stdout)
    (listed,) = [d for d in report["drills"]["not_passed"] if d["machine_id"] == never]
    assert "never backed up" in listed["why"]
    events = homesync_server.index_rows(f"SELECT detail FROM audit WHERE action = 'drill' AND machine_id = '{never}'")
    assert events and json.loads(events[-1][0])["never_backed_up"] is True
