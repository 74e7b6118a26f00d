"""Machine display names, user names, machine ids and archive names."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from homesync import names
from homesync.errors import InvalidNameError

printable = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1,
                    max_size=100).filter(lambda s: s.strip() and not set(s) & names._BIDI_CONTROLS)


@given(printable)
def test_printable_names_are_kept_normalised(raw):
    name = names.machine_name(raw)
    assert name == unicodedata.normalize("NFC", raw).strip()
    assert names.machine_name(name) == name


@given(printable, st.sampled_from(["\x00", "\x07", "\n", "\r", "\x1b", "\x7f", "\u2028", "\u202e"]), st.data())
def test_control_characters_are_refused_anywhere(raw, bad, data):
    at = data.draw(st.integers(0, len(raw)))
    with pytest.raises(InvalidNameError, match="control character"):
        names.machine_name("a" + raw[:at] + bad + raw[at:] + "z")


@pytest.mark.parametrize("raw", ["", " ", "\t", "   \n "])
def test_empty_names_are_refused(raw):
    with pytest.raises(InvalidNameError):
        names.machine_name(raw)


def test_long_names_are_refused_with_their_length():
    assert names.machine_name("x" * 100) == "x" * 100
    with pytest.raises(InvalidNameError, match="500 characters"):
        names.machine_name("x" * 500)


def test_quotes_and_unicode_are_fine():
    assert names.machine_name("  Joe's \"Thinkpad\" 💻 ") == "Joe's \"Thinkpad\" 💻"
    assert names.machine_name_key("JOE'S THINKPAD") == names.machine_name_key("joe's thinkpad")
    # NFD and NFC spellings are the same computer
    assert names.machine_name_key(names.machine_name("Ame\u0301lie")) == names.machine_name_key("Amélie")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)))
def test_archive_names_are_recognised_and_sort_by_time(when):
    name = names.archive_name(when)
    assert names.is_archive_name(name)
    assert name[:19] == when.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize("value", ["../x", "0123456789abcdeF", "0123456789abcde", "/etc", 5, None, "0" * 17])
def test_only_server_generated_ids_are_machine_ids(value):
    assert not names.is_machine_id(value)
    assert names.is_machine_id("0123456789abcdef")


@pytest.mark.parametrize("raw", ["joe", "ann.smith", "_svc", "a-b_c.d"])
def test_local_user_names(raw):
    assert names.local_user_name(raw) == raw


@pytest.mark.parametrize("raw", ["Joe", "", "1abc", "a b", "x" * 33, "jo*e", "a\x00"])
def test_bad_local_user_names(raw):
    with pytest.raises(InvalidNameError):
        names.local_user_name(raw)
