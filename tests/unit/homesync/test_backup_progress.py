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


class _Terminal:
    """A stderr that says it is a terminal, keeping what is written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_an_error_cutting_the_bar_short_is_a_line_of_its_own(monkeypatch):
    from homesync.errors import HomesyncError
    stderr = _Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    on_event = console.backup_progress(quiet=False, expected_bytes=None)

    def failing_backup():
        on_event({"type": "archive_progress", "original_size": 1000, "nfiles": 3})
        raise HomesyncError("the storage quota on the backup server is used up")
    assert console.run_main("homesync", failing_backup, debug=False) != 0
    bar, error = stderr.text.rsplit("\n", 2)[:2]
    assert bar.startswith("\r[") and error == "homesync: error: the storage quota on the backup server is used up"


def test_a_finished_bar_is_ended_once(monkeypatch):
    stderr = _Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    on_event = console.backup_progress(quiet=False, expected_bytes=None)
    assert console.run_main("homesync", lambda: on_event({"type": "archive_progress", "finished": True}),
                            debug=False) == 0
    assert stderr.text.endswith("done" + " " * 36 + "\n") and not stderr.text.endswith("\n\n")
