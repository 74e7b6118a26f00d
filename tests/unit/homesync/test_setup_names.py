"""The name `homesync setup` suggests for a new computer: the first word of the
directory's full name, the chassis in words, unique among the user's computers."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from homesync import chassis, names


@pytest.mark.parametrize("full, user, kind, taken, expected", [
    ("Joe Bloggs", "joe", "laptop", [], "Joe's laptop"),
    ("", "joe", "desktop", [], "Joe's desktop"),
    ("Ann", "ann", "", [], "Ann's computer"),
    ("Joe Bloggs", "joe", "laptop", ["joe's LAPTOP"], "Joe's laptop 2"),
    ("Joe Bloggs", "joe", "laptop", ["Joe's laptop", "Joe's laptop 2"], "Joe's laptop 3"),
    ("  Zoë  Ångström ", "zoe", "tablet", [], "Zoë's tablet"),
])
def test_suggested_names(full, user, kind, taken, expected):
    assert names.suggest_machine_name(full, user, kind, taken) == expected


@given(st.text(max_size=300), st.text(min_size=1, max_size=300), st.sampled_from(["laptop", "desktop", ""]),
       st.lists(st.text(max_size=120), max_size=5))
def test_a_suggestion_is_always_a_valid_free_name(full, user, kind, taken):
    name = names.suggest_machine_name(full, user, kind, taken)
    assert names.machine_name(name) == name
    assert names.machine_name_key(name) not in {names.machine_name_key(t) for t in taken}


@pytest.mark.parametrize("code, kind", [("9", "laptop"), ("10", "laptop"), ("31", "laptop"), ("3", "desktop"),
                                        ("7", "desktop"), ("17", "server"), ("30", "tablet"), ("1", ""),
                                        ("junk", "")])
def test_dmi_chassis_codes(code, kind):
    assert chassis.from_dmi(code) == kind


@pytest.mark.parametrize("text, kind", [("laptop", "laptop"), ("convertible", "laptop"), ("desktop", "desktop"),
                                        ("vm", "virtual machine"), ("", "")])
def test_hostnamectl_chassis(text, kind):
    assert chassis.from_hostnamectl(text) == kind


def test_the_environment_overrides_detection(monkeypatch):
    monkeypatch.setenv(chassis.ENV_OVERRIDE, "laptop")
    assert chassis.detect() == "laptop"
