"""The backup's progress bar text: bytes and files done, rate, time left from the last
backup's size; it never reaches 100% before borg says it finished."""

from __future__ import annotations

import pytest

from homesync import console


def test_with_an_estimate():
    fraction, text = console.backup_progress_line(50_000_000, 1200, 2.0, 100_000_000)
    assert fraction == 0.5
    assert text == "50.0 MB 1200 files 25.0 MB/s ~2 s"
    assert len(text) <= 40


def test_without_an_estimate_the_bar_stays_empty():
    fraction, text = console.backup_progress_line(50_000_000, 1200, 2.0, None)
    assert fraction == 0.0 and text == "50.0 MB 1200 files 25.0 MB/s"


def test_more_than_expected_stays_below_one():
    fraction, _ = console.backup_progress_line(150_000_000, 1200, 2.0, 100_000_000)
    assert fraction == 0.99


def test_no_bar_without_a_terminal(capsys):
    assert console.backup_progress(quiet=False, expected_bytes=1) is None  # pytest's stderr is no terminal


def test_a_stopped_backup_with_the_server_gone_says_so_instead_of_crashing(monkeypatch):
    # found by the fleet-policy work: the repository could not be asked (None), and
    # `name in None` raised TypeError, an "internal error" and a backup counted failed
    from homesync.actions import backup as backup_action
    from homesync.errors import Cancelled
    reported = []
    monkeypatch.setattr(backup_action, "_archives_named", lambda access, paths, name: None)
    monkeypatch.setattr(backup_action, "_report", lambda config, paths, report: reported.append(report))
    with pytest.raises(Cancelled, match="continues from its checkpoint if borg wrote one"):
        backup_action._interrupted(None, None, None, "2026-12-01T10:00:00", 1.0, "SIGTERM")
    assert [r["result"] for r in reported] == ["interrupted"]
