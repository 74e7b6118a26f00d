"""The exact borg argv and environment homesync builds (no subprocess needed)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, strategies as s

from homesync import borg, execute
from homesync.errors import BorgCacheError, BorgError, Cancelled, RepositoryLockedError


def test_create_backs_up_the_current_directory_with_exclusions():
    argv = borg.make_create_command("ssh://id@h:1/./id", "2026-01-01T00:00:00.000Z", ["sh:.cache"], [".nobackup"])
    assert argv[1:3] == ("create", "--json")
    assert argv[-2:] == ("ssh://id@h:1/./id::2026-01-01T00:00:00.000Z", ".")
    assert ("--exclude", "sh:.cache") == argv[argv.index("--exclude"):argv.index("--exclude") + 2]
    assert "--exclude-caches" in argv and "--one-file-system" in argv and "--log-json" in argv
    assert argv[argv.index("--exclude-if-present") + 1] == ".nobackup"


def test_serve_is_append_only_and_restricted_to_one_repository():
    argv = borg.make_serve_command(Path("/srv/repos/0123456789abcdef"), "10G")
    assert argv[1:] == ("serve", "--restrict-to-repository", "/srv/repos/0123456789abcdef", "--append-only",
                        "--storage-quota", "10G")


def test_the_environment_is_fresh_and_carries_no_inherited_secrets(monkeypatch):
    monkeypatch.setenv("BORG_PASSPHRASE", "leaked")
    monkeypatch.setenv("HOMESYNC_SHIM_KEY_FILE", "/elsewhere")
    env = borg.BorgEnvironment(cache_dir=Path("/c"), config_dir=Path("/k"), rsh="shim").build()
    assert "BORG_PASSPHRASE" not in env and env.get("HOMESYNC_SHIM_KEY_FILE") is None
    assert env["BORG_EXIT_CODES"] == "modern" and env["BORG_RSH"] == "shim" and env["TZ"] == "UTC"
    assert env["BORG_SECURITY_DIR"] == "/k/security"


def test_listed_mtimes_are_utc_microseconds():
    assert borg.listed_mtime_ns({"mtime": "1970-01-01T00:00:01.000002"}) == 1_000_002_000


def _fake_borg(tmp_path, script: str) -> str:
    path = tmp_path / "borg"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_the_passphrase_reaches_borg_through_a_pipe_never_argv_or_env(tmp_path):
    fake = _fake_borg(tmp_path, 'cat "/dev/fd/$BORG_PASSPHRASE_FD" > "$1"; env > "$1.env"; echo "{}"\n')
    out = tmp_path / "got"
    result = borg.run_borg((fake, str(out)), borg.BorgEnvironment(), b"s3cret")
    assert out.read_bytes() == b"s3cret" and result.returncode == 0
    assert b"s3cret" not in (tmp_path / "got.env").read_bytes()


@pytest.mark.parametrize("rc, error", [(2, BorgError), (73, RepositoryLockedError), (52, BorgError),
                                       (137, Cancelled)])
def test_exit_codes_become_errors_with_borgs_last_message(tmp_path, rc, error):
    fake = _fake_borg(tmp_path, f'echo \'{{"type": "log_message", "levelname": "ERROR", "message": "it broke"}}\' >&2\n'
                                f'exit {rc}\n')
    with pytest.raises(error) as raised:
        borg.run_borg((fake, "create"), borg.BorgEnvironment())
    if rc == 2:
        assert "it broke" in raised.value.message


@pytest.mark.parametrize("rc", [1, 100, 107])
def test_warnings_are_not_failures(tmp_path, rc):
    fake = _fake_borg(tmp_path, 'echo \'{"type": "log_message", "levelname": "WARNING", "message": "changed"}\' >&2\n'
                                f'echo "{{}}"; exit {rc}\n')
    result = borg.run_borg((fake,), borg.BorgEnvironment())
    assert result.returncode == rc and result.warnings == ["changed"]


def test_split_stderr_lines_are_read_whole(tmp_path):
    fake = _fake_borg(tmp_path, "printf '{\"type\": \"progress_percent\", ' >&2; sleep 0.2; "
                                "printf '\"current\": 5, \"total\": 10}\\n' >&2; echo '{}'\n")
    events = []
    borg.run_borg((fake,), borg.BorgEnvironment(), on_event=events.append)
    assert events == [{"type": "progress_percent", "current": 5, "total": 10}]


def test_a_stopped_process_group_is_stopped_entirely(tmp_path):
    fake = _fake_borg(tmp_path, "sleep 30 & sleep 30\n")
    handle = {}
    import threading
    threading.Timer(0.3, lambda: handle["r"].terminate()).start()
    with pytest.raises(Cancelled):
        borg.run_borg((fake,), borg.BorgEnvironment(), on_start=lambda r: handle.setdefault("r", r))
    group = handle["r"].process.pid
    assert not [pid for pid in _alive_in_group(group)], "a process of the group survived"


def _alive_in_group(pgid: int) -> list[int]:
    """Return the live (non-zombie) processes of a process group."""
    import time
    time.sleep(0.2)
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry))
    return alive


def _crash(where: str) -> list[dict]:
    trace = (f'Traceback (most recent call last):\n  File "/venv/lib/python3.11/site-packages/borg/{where}", '
             f'line 1, in f\nAttributeError: boom')
    return [{"type": "log_message", "levelname": "ERROR", "message": "Local Exception"},
            {"type": "log_message", "levelname": "ERROR", "message": trace}]


def test_a_crash_in_borgs_cache_is_told_apart_and_its_traceback_logged(caplog):
    done = execute.Completed(2, b"")
    with pytest.raises(BorgCacheError) as raised:
        borg._interpret(("borg", "create"), done, _crash("cache.py"), False)
    assert "local cache" in raised.value.message and "Local Exception" in raised.value.message
    assert "AttributeError: boom" in caplog.text  # the traceback is kept in the log


def test_a_crash_elsewhere_is_an_ordinary_borg_error():
    with pytest.raises(BorgError) as raised:
        borg._interpret(("borg", "create"), execute.Completed(2, b""), _crash("archive.py"), False)
    assert not isinstance(raised.value, BorgCacheError)


@given(s.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)))
def test_one_parser_reads_borg_times_at_both_precisions(when):
    text = when.isoformat(timespec="microseconds")  # as borg prints a time (naive, TZ=UTC)
    ns = borg.listed_mtime_ns({"mtime": text})
    assert abs(borg.borg_time(text) - ns / 1e9) < 1e-5
    assert ns == round((when.replace(tzinfo=timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc))
                       / timedelta(microseconds=1)) * 1000


def test_an_upload_limit_becomes_borgs_upload_ratelimit():
    from homesync import borg as borg_module
    limited = borg_module.make_create_command("ssh://m@h:1/./m", "a", [], upload_ratelimit=2048)
    assert limited[limited.index("--upload-ratelimit") + 1] == "2048"
    assert "--upload-ratelimit" not in borg_module.make_create_command("ssh://m@h:1/./m", "a", [])
