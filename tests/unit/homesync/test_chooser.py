"""The interactive chooser's dialogue, with scripted answers."""

from __future__ import annotations

import pytest

from homesync import chooser
from homesync.errors import Cancelled, NotFoundError

MACHINES = [{"name": "Joe's Workstation", "archives": 3, "last_backup": 1.7e9, "last_size": 4e9},
            {"name": "Old Netbook", "archives": 0, "last_backup": None, "last_size": None},
            {"name": "Joe's Thinkpad", "archives": 9, "last_backup": 1.8e9, "last_size": 1e9}]


def _scripted(*answers):
    replies, shown = list(answers), []
    return (lambda prompt: (shown.append(prompt), replies.pop(0))[1]), shown


def test_replace_clone_and_files_only():
    ask, shown = _scripted("x", "9", "2", "r")
    assert chooser.choose(MACHINES, enrolled=False, ask=ask, show=shown.append) == \
        chooser.Choice("Joe's Thinkpad", adopt=True)
    assert not any("Old Netbook" in line for line in shown), "machines without a backup are not offered"
    ask, shown = _scripted("1", "c", "Joe's New Laptop")
    assert chooser.choose(MACHINES, False, ask, shown.append) == chooser.Choice("Joe's Workstation",
                                                                                 as_new="Joe's New Laptop")
    ask, shown = _scripted("1", "F")
    assert chooser.choose(MACHINES, False, ask, shown.append) == chooser.Choice("Joe's Workstation")


def test_an_enrolled_computer_only_gets_files():
    ask, shown = _scripted("2")
    assert chooser.choose(MACHINES, True, ask, shown.append) == chooser.Choice("Joe's Thinkpad")


def test_giving_up_and_having_nothing():
    ask, shown = _scripted("")
    with pytest.raises(Cancelled):
        chooser.choose(MACHINES, False, ask, shown.append)

    def eof(prompt):
        raise EOFError
    with pytest.raises(Cancelled):
        chooser.choose(MACHINES, False, eof, print)
    with pytest.raises(NotFoundError):
        chooser.choose([MACHINES[1]], False, ask, print)
