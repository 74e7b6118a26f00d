"""One password login end to end in-process: counted before the check, at most
CONCURRENT_CHECKS checks at once, and what each outcome leaves in the index."""

from __future__ import annotations

import threading
from unittest.mock import patch

from homesync.errors import AuthenticationError, IdentityUnavailableError, TooManyLoginsError
from homesync_server import password_login
from homesync_server.dispatch import REFUSED, USER
from homesync_server.identity import Person
from homesync_server.password_login import PasswordLogins
from homesync_server.index_store import IndexStore, open_url


class SlowDirectory:
    """An identity backend whose checks wait until released, counting how many run at once."""

    def __init__(self, outcome=None) -> None:
        self.go, self.running, self.most = threading.Event(), 0, 0
        self.outcome = outcome
        self._lock = threading.Lock()

    def canonical_name(self, name: str) -> str:
        return name.strip().lower()

    def authenticate(self, name: str, password: str) -> Person:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.go.wait(10)
        with self._lock:
            self.running -= 1
        if self.outcome:
            raise self.outcome
        if password != "right":
            raise AuthenticationError("login failed: wrong user name or password")
        return Person(name.strip().lower())


def _records(index: IndexStore) -> dict[str, int]:
    return {r.key: r.attempts for r in index.login_records()}


def test_checks_beyond_the_pool_wait_then_are_refused_as_busy_and_uncounted(tmp_path):
    index, directory = open_url(f'sqlite://{tmp_path / "i.sqlite"}'), SlowDirectory()
    logins = PasswordLogins(index, directory)
    results = []
    with patch.object(password_login, "CHECK_WAIT", 0.3):
        threads = [threading.Thread(target=lambda n=n: results.append(logins.check(f"user{n}", "x", "10.0.0.1")))
                   for n in range(password_login.CONCURRENT_CHECKS + 1)]
        for t in threads:
            t.start()
        threads[-1].join(5)
        busy = [r for r in results if r is not None]
        directory.go.set()
        for t in threads:
            t.join()
    assert directory.most == password_login.CONCURRENT_CHECKS
    assert len(busy) == 1 and busy[0].kind == REFUSED and isinstance(busy[0].error, TooManyLoginsError)
    assert "at once" in busy[0].error.line()
    assert _records(index)["address:10.0.0.1"] == password_login.CONCURRENT_CHECKS


def test_a_right_password_clears_the_account_and_a_directory_outage_counts_nothing(tmp_path):
    index, directory = open_url(f'sqlite://{tmp_path / "i.sqlite"}'), SlowDirectory()
    directory.go.set()
    logins = PasswordLogins(index, directory)
    assert logins.check(" JOE", "wrong", "a") is None
    assert logins.check("joe ", "wrong", "a") is None
    assert _records(index) == {"account:joe": 2, "address:a": 2}
    person = logins.check("Joe", "right", "a")
    assert person.kind == USER and person.user == "joe"
    assert _records(index) == {"address:a": 2}
    outage = SlowDirectory(IdentityUnavailableError("directory unavailable"))
    outage.go.set()
    down = PasswordLogins(index, outage)
    refused = down.check("ann", "right", "a")
    assert refused.kind == REFUSED and isinstance(refused.error, IdentityUnavailableError)
    assert _records(index) == {"address:a": 2}
    failed = [e["detail"]["reason"] for e in index.audit_events(action="login_failed")]
    assert failed == ["wrong user name or password"] * 2
