"""A running backup as status shows it: bytes and files from borg's events, the
percentage of the last backup's size, the rate, and the time left."""

from __future__ import annotations

from homesync.actions import status
from homesync.agent import policy
from homesync.agent.scheduler import Job


def test_progress_rate_and_time_left():
    job = Job(1000.0, policy.Run("changes", "files changed"), expected_size=100_000_000)
    job.on_event({"type": "archive_progress", "original_size": 25_000_000, "nfiles": 300, "finished": False})
    seen = job.describe(now=1010.0)
    assert (seen["bytes"], seen["files"], seen["percent"]) == (25_000_000, 300, 25.0)
    assert seen["rate"] == 2_500_000 and seen["seconds_left"] == 30
    text = status._state({"state": "backing up", "job": dict(seen, stopping=None)})
    assert text == "backing up, about 25% (25.0 MB, 300 files), because files changed; 2.5 MB/s, about 30 s left"


def test_without_a_last_backup_no_percentage():
    job = Job(1000.0, policy.Run("changes", "files changed"), expected_size=None)
    job.on_event({"type": "archive_progress", "original_size": 1_000_000, "nfiles": 3, "finished": False})
    seen = job.describe(now=1002.0)
    assert seen["percent"] is None and seen["seconds_left"] is None and seen["rate"] == 500_000
