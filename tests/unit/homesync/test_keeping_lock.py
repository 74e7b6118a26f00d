"""The catalog's lock a backup hands to its keeper: taken when free, left when another
refresh holds it, and let go by the keeper before it pauses for a repository that the
next backup locks (a search with no catalog must not wait through the pauses)."""

from __future__ import annotations

import os

from homesync.actions import history
from homesync.config import Paths
from homesync.errors import RepositoryLockedError


def _paths(tmp_path) -> Paths:
    return Paths(config_dir=tmp_path / "config", data_dir=tmp_path / "data", state_dir=tmp_path / "state",
                 cache_dir=tmp_path / "cache")


def test_the_lock_is_taken_when_free_and_left_to_whoever_holds_it(tmp_path):
    lock = tmp_path / "m.lock"
    held = history._taken(lock)
    assert held is not None and history._busy(lock)
    assert history._taken(lock) is None  # the keeping after the backup before, still under way
    os.close(held)
    assert not history._busy(lock)


def test_a_keeper_lets_the_lock_go_before_pausing_for_a_locked_repository(tmp_path, monkeypatch):
    lock = tmp_path / "m.lock"
    held = history._taken(lock)
    seen = []

    def attempt(paths, held=False):
        seen.append((held, history._busy(lock)))
        if len(seen) == 1:
            raise RepositoryLockedError("the repository is locked by the next backup")
        return True

    monkeypatch.setattr(history, "_keep_current", attempt)
    monkeypatch.setattr(history, "KEEP_PAUSE", 0)
    assert history.keep_current(_paths(tmp_path), held) is True
    assert seen == [(True, True), (False, False)]  # held for the first try, free for the next
