"""Failed-login rate limiting per user and per source address."""

from __future__ import annotations

from homesync_server.logins import BASE_BLOCK, FREE_FAILURES, LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_few_failures_are_free_then_the_user_is_blocked_for_a_while():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(FREE_FAILURES - 1):
        limiter.failed("joe", "10.0.0.1")
        assert not limiter.blocked("joe", "10.0.0.1")
    limiter.failed("joe", "10.0.0.1")
    assert limiter.blocked("joe", "10.0.0.1")
    assert limiter.blocked("joe", "10.0.0.2"), "per user, from any address"
    assert limiter.blocked("ann", "10.0.0.1"), "per address, for any user"
    assert not limiter.blocked("ann", "10.0.0.2")
    clock.now += BASE_BLOCK + 1
    assert not limiter.blocked("joe", "10.0.0.1")


def test_the_block_doubles_with_further_failures():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(FREE_FAILURES + 2):
        limiter.failed("joe", "a")
    clock.now += BASE_BLOCK * 3
    assert limiter.blocked("joe", "a")
    clock.now += BASE_BLOCK * 2
    assert not limiter.blocked("joe", "a")


def test_a_success_clears_the_users_count_not_the_addresss():
    limiter = LoginLimiter(Clock())
    for _ in range(FREE_FAILURES - 1):
        limiter.failed("joe", "a")
    limiter.succeeded("joe", "a")
    limiter.failed("joe", "b")
    assert not limiter.blocked("joe", "b")
    limiter.failed("ann", "a")
    assert limiter.blocked("ann", "a")
