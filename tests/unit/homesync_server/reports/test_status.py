"""Statuses at their boundaries, for any policy: an age equal to a threshold is still
within it; a hair past it is not. Retired, replaced and gone come before any age."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as s

from homesync_server.reports import status as st
from homesync_server.reports.status import Policy

hours = s.floats(min_value=0.01, max_value=24 * 365, allow_nan=False, allow_infinity=False)


@s.composite
def policies(draw) -> Policy:
    warn = draw(hours)
    critical = draw(s.floats(min_value=warn, max_value=warn * 100 + 1, allow_nan=False)
                    .filter(lambda c: c * 3600 > warn * 3600))
    return Policy.from_hours(warn, critical)


@given(policies())
def test_exactly_at_a_threshold_is_still_within_it(policy):
    assert st.status("active", False, policy.warn_seconds, policy) == st.OK
    assert st.status("active", False, policy.critical_seconds, policy) == st.STALE


@given(policies())
def test_just_past_a_threshold_is_past_it(policy):
    after_warn = math.nextafter(policy.warn_seconds, math.inf)
    after_critical = math.nextafter(policy.critical_seconds, math.inf)
    assert st.status("active", False, after_warn, policy) == st.STALE
    assert st.status("active", False, after_critical, policy) == st.CRITICAL


@given(policies(), s.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_status_is_monotonic_in_age(policy, age):
    rank = {st.OK: 0, st.STALE: 1, st.CRITICAL: 2}
    status = st.status("active", False, age, policy)
    assert status in rank
    assert rank[status] <= rank[st.status("active", False, age * 2 + 1, policy)]
    expected = st.CRITICAL if age > policy.critical_seconds else st.STALE if age > policy.warn_seconds else st.OK
    assert status == expected


@given(policies(), s.one_of(s.none(), s.floats(min_value=0, max_value=1e10)), s.booleans())
def test_state_and_owner_come_before_the_age(policy, age, gone):
    assert st.status("retired", gone, age, policy) == st.RETIRED
    assert st.status("replaced", gone, age, policy) == st.REPLACED
    assert st.status("active", True, age, policy) == st.OWNER_GONE


@given(policies())
def test_never_backed_up_is_never_and_alarming_only_past_the_critical_age(policy):
    assert st.status("active", False, None, policy) == st.NEVER
    now = 0.0  # so that now - enrolled is exact
    assert not st.alarming(st.NEVER, -policy.critical_seconds, now, policy)
    assert st.alarming(st.NEVER, math.nextafter(-policy.critical_seconds, -math.inf), now, policy)
    assert st.alarming(st.CRITICAL, now, now, policy)
    assert not st.alarming(st.STALE, 0, now, policy)


def test_a_backup_from_the_future_is_zero_seconds_old():
    assert st.backup_age(110.0, 100.0) == 0.0
    assert st.backup_age(None, 100.0) is None


@pytest.mark.parametrize("warn, critical", [(0, 1), (5, 5), (6, 5), (-1, 5)])
def test_a_policy_needs_ordered_positive_ages(warn, critical):
    with pytest.raises(ValueError):
        Policy.from_hours(warn, critical)
