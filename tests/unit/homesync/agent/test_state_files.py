"""Damage to the agent's and the CLI's state files heals by itself (issue 18): each kind
of file, when garbage, truncated or of the wrong shape, is set aside as <name>.damaged,
said once (the log and the notes `status` and the next backup show), and read as
missing, so that homesync starts that state afresh. The readers are the real ones."""

from __future__ import annotations

import json
import logging

import pytest

from homesync import state_files
from homesync.actions import restore
from homesync.agent import record
from homesync.config import Paths

TARGET = "/home/joe"


def _progress(paths: Paths) -> object:
    return restore._resumable(paths.state_dir / "restore-progress.json", "m1", "a1", TARGET)


def _throughput(paths: Paths) -> object:
    return restore._throughput(paths)


def _record(paths: Paths) -> object:
    loaded = record.load(paths)
    return (loaded.last_success, loaded.consecutive_failures, loaded.revoked)


# file name, a sound content, what reading it gives, what a missing (or set aside) one gives
KINDS = {
    "agent-state.json": (
        {"last_success": 100.0, "last_attempt": 100.0, "consecutive_failures": 2, "warned": False,
         "reference": 50.0, "last_size": 10, "last_result": None, "revoked": None},
        _record, (100.0, 2, None), (None, 0, None)),
    "last-backup.json": (
        {"name": "a1", "end": 100.0, "result": "failed", "error": "x", "original_size": 0},
        record.read_last_backup, {"name": "a1", "end": 100.0, "result": "failed", "error": "x", "original_size": 0},
        None),
    "restore-progress.json": (
        {"machine_id": "m1", "archive": "a1", "target": TARGET, "done": ["documents"]},
        _progress, {"documents"}, set()),
    "restore-throughput.json": (
        {"bytes_per_second": 5e6}, _throughput, (5e6, True), (restore.ASSUMED_THROUGHPUT, False)),
}
WRONG_SHAPE = {
    "agent-state.json": {"last_success": "yesterday", "consecutive_failures": -1},
    "last-backup.json": {"end": "soon", "result": 3},
    "restore-progress.json": {"machine_id": "m1", "archive": "a1", "target": TARGET, "done": 5},
    "restore-throughput.json": {"bytes_per_second": -1},
}


@pytest.fixture
def paths(tmp_path) -> Paths:
    state_files.take_notes()
    paths = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "state", tmp_path / "cache")
    paths.state_dir.mkdir()
    return paths


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_sound_state_file_is_read_and_a_missing_one_starts_afresh(paths, name):
    sound, read, expected, fresh = KINDS[name]
    assert read(paths) == fresh
    (paths.state_dir / name).write_text(json.dumps(sound))
    assert read(paths) == expected
    assert state_files.notes() == [] and not (paths.state_dir / f"{name}.damaged").exists()


def _damage(name: str, how: str) -> bytes:
    sound = json.dumps(KINDS[name][0]).encode()
    return {"garbage": b"\xff\xfe\x00 not json at all", "truncated": sound[:len(sound) // 2], "empty": b"",
            "wrong shape": json.dumps(WRONG_SHAPE[name]).encode(), "not an object": b"[1, 2, 3]"}[how]


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "wrong shape", "not an object"])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_damaged_state_file_is_set_aside_said_once_and_started_afresh(paths, name, how, caplog):
    _, read, _, fresh = KINDS[name]
    damaged = _damage(name, how)
    (paths.state_dir / name).write_bytes(damaged)
    with caplog.at_level(logging.WARNING):
        assert read(paths) == fresh
        assert read(paths) == fresh  # the second reader finds nothing left to say
    assert (paths.state_dir / f"{name}.damaged").read_bytes() == damaged  # kept, for whoever wants to look
    assert not (paths.state_dir / name).exists()
    said = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(said) == 1 and "set aside" in said[0], said
    (note,) = state_files.take_notes()
    assert name in note and "started afresh" in note
    assert state_files.take_notes() == []
