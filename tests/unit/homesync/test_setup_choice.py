"""`homesync setup`'s non-interactive flags: each good combination is one choice, each
bad one a single line and exit 29."""

from __future__ import annotations

import pytest

from homesync.actions import setup
from homesync.errors import SetupChoiceError


def _flags(**given):
    flags = dict(new=False, machine=None, replace=None, clone=None, as_name=None, template=None)
    flags.update(given)
    return setup.Flags(**flags)


@pytest.mark.parametrize("given, expected", [
    ({"new": True}, setup.Choice(setup.NEW)),
    ({"new": True, "machine": "Joe's laptop"}, setup.Choice(setup.NEW, name="Joe's laptop")),
    ({"replace": "Joe's Thinkpad"}, setup.Choice(setup.REPLACE, source="Joe's Thinkpad")),
    ({"clone": "Joe's Thinkpad", "as_name": "Lab 7"}, setup.Choice(setup.CLONE, source="Joe's Thinkpad",
                                                                    name="Lab 7")),
    ({"clone": "Joe's Thinkpad"}, setup.Choice(setup.CLONE, source="Joe's Thinkpad")),
    ({"template": "Standard Laptop"}, setup.Choice(setup.TEMPLATE, source="Standard Laptop")),
    ({"template": "Standard Laptop", "as_name": "Lab 7"}, setup.Choice(setup.TEMPLATE, source="Standard Laptop",
                                                                        name="Lab 7")),
    ({}, None),
])
def test_good_combinations(given, expected):
    assert setup.choice_from_flags(_flags(**given)) == expected


@pytest.mark.parametrize("given, words", [
    ({"new": True, "replace": "A"}, "only one of"),
    ({"clone": "A", "template": "T"}, "only one of"),
    ({"replace": "A", "as_name": "B"}, "--as"),
    ({"new": True, "as_name": "B"}, "--as"),
    ({"replace": "A", "machine": "B"}, "--machine"),
    ({"machine": "B"}, "--machine"),
    ({"as_name": "B"}, "--as"),
])
def test_bad_combinations_are_exit_29(given, words):
    with pytest.raises(SetupChoiceError) as caught:
        setup.choice_from_flags(_flags(**given))
    assert caught.value.exit_code == 29 and words in caught.value.line() and "\n" not in caught.value.line()
