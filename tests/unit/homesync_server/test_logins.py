"""Throttling of password logins per account and per source address: the pure rules
(logins.py), under any interleaving of attempts, and their records in the index."""

from __future__ import annotations

import threading
from unittest.mock import patch

from hypothesis import given, settings, strategies as st

from homesync_server import logins
from homesync_server.logins import ACCOUNT, ADDRESS, QUIET, Record
from homesync_server.index_store import open_url

T0 = 1_000_000.0


class Records:
    """The records the index would keep, in memory."""

    def __init__(self) -> None:
        self.by_key: dict[str, Record] = {}

    def pair(self, name: str, source: str) -> tuple[Record, Record]:
        return tuple(self.by_key.setdefault(k, Record(k)) for k in logins.keys(name, source))

    def attempt(self, name: str, source: str, now: float) -> logins.Verdict:
        return logins.reserve(*self.pair(name, source), now, name, source)

    def succeed(self, name: str, source: str, now: float) -> list[dict]:
        return logins.succeeded(*self.pair(name, source), now)


def test_a_few_attempts_are_free_then_the_account_is_blocked_for_a_while():
    records = Records()
    for n in range(ACCOUNT.attempts):
        assert records.attempt("joe", "10.0.0.1", T0 + n).allowed
    refused = records.attempt("joe", "10.0.0.2", T0 + 5)
    assert not refused.allowed and refused.kind == "account", "per account, from any address"
    assert refused.until == T0 + 5 + ACCOUNT.base_block
    assert refused.error(T0 + 5).line() == "too many failed logins for this account; try again in 1 minute"
    assert records.attempt("ann", "10.0.0.1", T0 + 6).allowed, "the address is far from its own limit"
    assert records.attempt("joe", "10.0.0.1", T0 + 6 + ACCOUNT.base_block).allowed, "a served block earns one"


def test_the_address_limit_is_much_higher_and_counts_every_name():
    records = Records()
    for n in range(ADDRESS.attempts):
        assert records.attempt(f"user{n}", "10.0.0.1", T0).allowed
    refused = records.attempt("ann", "10.0.0.1", T0)
    assert not refused.allowed and refused.kind == "address"
    assert "from your address; try again in 1 minute" in refused.error(T0).line()
    assert records.attempt("ann", "10.0.0.2", T0).allowed


def test_the_block_doubles_with_each_attempt_after_a_served_block():
    records, now = Records(), T0
    for _ in range(ACCOUNT.attempts):
        records.attempt("joe", "a", now)
    assert not records.attempt("joe", "a", now).allowed
    for blocks in range(1, 8):
        now += ACCOUNT.block(blocks - 1)
        assert records.attempt("joe", "a", now).allowed
        refused = records.attempt("joe", "a", now)
        assert not refused.allowed and refused.until == now + ACCOUNT.block(blocks)
    assert ACCOUNT.block(40) == ACCOUNT.max_block


def test_a_success_clears_the_accounts_count_and_takes_back_only_its_own_from_the_address():
    records = Records()
    for _ in range(ACCOUNT.attempts - 1):
        records.attempt("joe", "a", T0)
    records.attempt("joe", "a", T0)
    records.succeed("joe", "a", T0)
    account, address = records.pair("joe", "a")
    assert account.empty() and address.attempts == ACCOUNT.attempts - 1
    assert all(records.attempt("joe", "b", T0).allowed for _ in range(ACCOUNT.attempts))


def test_a_quiet_record_is_forgotten():
    records = Records()
    for _ in range(ACCOUNT.attempts + 1):
        records.attempt("joe", "a", T0)
    later = T0 + ACCOUNT.base_block + QUIET
    assert all(records.attempt("joe", "a", later).allowed for _ in range(ACCOUNT.attempts))


def test_refusals_are_audited_once_when_a_burst_starts_and_once_summed_when_it_ends():
    records, events = Records(), []
    for _ in range(ACCOUNT.attempts):
        events += records.attempt("joe", "a", T0).events
    assert events == []
    for n in range(1000):
        events += records.attempt("joe", "a", T0 + n * 0.01).events
    assert [e["detail"]["reason"] for e in events] == ["rate limited"]
    events += records.attempt("joe", "a", T0 + ACCOUNT.base_block).events  # the next allowed one ends the burst
    assert len(events) == 2 and events[1]["detail"]["refused"] == 1000
    assert events[1]["actor"] == "joe" and events[1]["source"] == "a"


SMALL = {"account": logins.Limit("account", attempts=3), "address": logins.Limit("address", attempts=5)}


@st.composite
def interleavings(draw):
    """Attempts (name, source, right password?) and an order of their steps: each
    attempt's index appears twice, first its reservation, then its outcome; the clock
    moves forward by less than one block in all."""
    n = draw(st.integers(1, 40))
    attempts = [(draw(st.sampled_from(["joe", "ann", "lou"])), draw(st.sampled_from(["a", "b"])),
                 draw(st.integers(0, 5)) == 0) for _ in range(n)]
    order = draw(st.permutations([i for i in range(n) for _ in (0, 1)]))
    ticks = draw(st.lists(st.floats(0, 59.0 / (2 * n)), min_size=2 * n, max_size=2 * n))
    return attempts, order, ticks


@settings(max_examples=500, deadline=None)
@given(interleavings())
def test_no_interleaving_checks_more_than_the_limit(case):
    """Since an account's last success, at most its limit of attempts are checked; from
    an address, at most its limit more than the successes from there."""
    attempts, order, ticks = case
    records, now, reserved = Records(), T0, {}
    per_account: dict[str, int] = {}
    per_address: dict[str, int] = {}
    with patch.dict(logins.LIMITS, SMALL):
        for i, tick in zip(order, ticks):
            now += tick
            name, source, right = attempts[i]
            if i not in reserved:
                reserved[i] = records.attempt(name, source, now).allowed
                per_account[name] = per_account.get(name, 0) + reserved[i]
                per_address[source] = per_address.get(source, 0) + reserved[i]
                assert per_account[name] <= SMALL["account"].attempts
                assert per_address[source] <= SMALL["address"].attempts
            elif reserved[i] and right:
                records.succeed(name, source, now)
                per_account[name] = 0
                per_address[source] -= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 4000), min_size=1, max_size=60))
def test_after_the_free_attempts_each_checked_guess_waits_for_a_whole_block(gaps):
    records, now, extra = Records(), T0, []
    for gap in gaps:
        now += gap
        forgotten = records.by_key.get("account:joe") is None or now >= records.by_key["account:joe"].forget_at()
        if forgotten:
            extra = []
        account = records.pair("joe", "a")[0]
        counted_before = account.attempts if not forgotten else 0
        if records.attempt("joe", "a", now).allowed and counted_before >= ACCOUNT.attempts:
            extra.append(now)
    for k in range(1, len(extra)):
        assert extra[k] - extra[k - 1] >= ACCOUNT.block(k)


def test_parallel_reservations_through_two_connections_to_the_index_allow_only_the_limit(tmp_path):
    """Two Index objects on one file stand for two server processes sharing it."""
    indexes = [open_url(f'sqlite://{tmp_path / "i.sqlite"}'), open_url(f'sqlite://{tmp_path / "i.sqlite"}')]
    results, start = [], threading.Barrier(40)

    def attempt(n: int) -> None:
        start.wait()
        index = indexes[n % 2]
        verdict = index.throttle(logins.keys("joe", f"10.0.0.{n}"),
                                 lambda r, now: (v := logins.reserve(*r, now, "joe", "x"), v.events),
                                 logins.forget_if_quiet)
        results.append(verdict.allowed)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == ACCOUNT.attempts
    reopened = open_url(f'sqlite://{tmp_path / "i.sqlite"}')
    account = [r for r in reopened.login_records() if r.key == "account:joe"][0]
    assert account.attempts == ACCOUNT.attempts and account.refused == 40 - ACCOUNT.attempts
    starts = reopened.audit_events(action="login_failed")
    assert len(starts) == 1 and starts[0]["detail"]["limit"] == "account"


def test_quiet_records_are_forgotten_with_their_summary_by_later_logins(tmp_path):
    index = open_url(f'sqlite://{tmp_path / "i.sqlite"}')

    def attempt(name, now):
        return index.throttle(logins.keys(name, "a"), lambda r, t: (v := logins.reserve(*r, t, name, "a"), v.events),
                              logins.forget_if_quiet, now=now)

    for n in range(ACCOUNT.attempts + 3):
        attempt("joe", T0 + n)
    attempt("ann", T0 + 10 * QUIET)
    assert [r.key for r in index.login_records()] == ["account:ann", "address:a"]
    summary = index.audit_events(action="login_failed")[-1]["detail"]
    assert summary["refused"] == 3 and summary["limit"] == "account"


def test_ldap_spellings_of_one_name_share_one_key():
    from homesync_server.identity.ldap import canonical_ldap_name

    assert {canonical_ldap_name(n) for n in ["JOE", " joe", "jOe ", "  Joe  ", "ｊｏｅ"]} == {"joe"}
    assert canonical_ldap_name("Mary  Ann") == canonical_ldap_name(" mary ann ") == "mary ann"
    assert canonical_ldap_name("joe") != canonical_ldap_name("jo e")


def test_addresses_are_counted_as_their_host_has_them():
    assert logins.keys("joe", "::ffff:192.0.2.10")[1] == logins.keys("joe", "192.0.2.10")[1] == "address:192.0.2.10"
    assert logins.keys("joe", "2001:db8::1")[1] == logins.keys("joe", "2001:db8::ffff:1")[1] == "address:2001:db8::/64"
    assert logins.keys("joe", "2001:db8:0:1::1")[1] != logins.keys("joe", "2001:db8::1")[1]
