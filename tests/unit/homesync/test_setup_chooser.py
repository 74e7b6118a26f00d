"""The setup menu with scripted answers: only the choices that exist are offered, a
computer without a backup cannot be picked, Enter takes the suggested name."""

from __future__ import annotations

import pytest

from homesync import chooser
from homesync.actions import setup
from homesync.actions.listing import Login
from homesync.errors import Cancelled

MACHINES = [{"name": "Joe's Thinkpad", "archives": 3, "last_backup": 1.7e9, "last_size": 10},
            {"name": "Joe's Empty", "archives": 0, "last_backup": None, "last_size": None}]
TEMPLATES = [{"name": "Standard Laptop", "published": 1.7e9, "original_size": 5}]


def _offer(machines=MACHINES, templates=TEMPLATES):
    return setup.Offer(Login("h:1", "SHA256:x", "joe", "pw"), "Joe Bloggs", machines, templates, "Joe's laptop")


def _run(answers, offer=None):
    shown, asked = [], []
    replies = iter(answers)

    def ask(prompt):
        asked.append(prompt)
        return next(replies)
    return chooser.choose_setup(offer or _offer(), ask=ask, show=shown.append), shown, asked


def test_new_with_the_suggested_name():
    choice, shown, asked = _run(["n", ""])
    assert choice == setup.Choice(setup.NEW, name="Joe's laptop")
    assert "  2) Joe's Empty  (never backed up)" in shown and asked[0] == "Choose [n/r/i/t]: "


def test_a_computer_without_a_backup_is_asked_again():
    choice, _, asked = _run(["r", "2", "1"])
    assert choice == setup.Choice(setup.REPLACE, source="Joe's Thinkpad")
    assert asked.count("Replace which computer? [1-2]: ") == 2


def test_identical_and_template_take_a_typed_name():
    assert _run(["i", "1", "Lab 7"])[0] == setup.Choice(setup.CLONE, source="Joe's Thinkpad", name="Lab 7")
    assert _run(["t", "1", ""])[0] == setup.Choice(setup.TEMPLATE, source="Standard Laptop", name="Joe's laptop")


def test_only_what_exists_is_offered():
    choice, shown, asked = _run(["r", "n", ""], _offer(machines=[], templates=[]))
    assert asked[0] == "Choose [n]: " and choice.kind == setup.NEW
    assert "You have no computers backed up yet." in shown


def test_end_of_input_cancels():
    with pytest.raises(Cancelled, match="nothing was set up"):
        _run([""])
