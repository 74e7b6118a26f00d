"""The exact argv of the server's own borg runs: check, info, hashes, delete, compact."""

from __future__ import annotations

from homesync import borg


def test_check_is_read_only_and_waits_for_the_lock():
    argv = borg.make_check_command("/srv/repos/x", lock_wait=300)
    assert argv[1:] == ("check", "--log-json", "--lock-wait", "300", "/srv/repos/x")
    assert "--repair" not in argv


def test_delete_names_archives_after_the_end_of_options():
    argv = borg.make_delete_command("/srv/repos/x", ["2026-01-01T00:00:00.000Z", "-odd"], lock_wait=5)
    assert argv[1:] == ("delete", "--log-json", "--lock-wait", "5", "--", "/srv/repos/x",
                        "2026-01-01T00:00:00.000Z", "-odd")


def test_hashes_are_listed_for_exact_path_prefixes_only():
    argv = borg.make_list_hashes_command("/r", "a", ["Documents/x", "-rf", "fm:*"])
    assert argv[1:5] == ("list", "--json-lines", "--format", "{sha256}")
    assert argv[-4:] == ("/r::a", "pp:Documents/x", "pp:-rf", "pp:fm:*")


def test_info_covers_every_archive_and_compact_needs_no_key():
    assert borg.make_info_command("/r")[-3:] == ("--glob-archives", "*", "/r")
    assert borg.make_compact_command("/r", 7)[1:] == ("compact", "--log-json", "--lock-wait", "7", "/r")
