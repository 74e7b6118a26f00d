"""The pure decision about "at risk" and "protected again" notices."""

from __future__ import annotations

import math

from hypothesis import given, strategies as st

from homesync.agent.notify import Protection, age_text, decide_notice

DAY = 86400.0
T0 = 1_700_000_000.0


def test_at_risk_once_then_silent_then_protected_once():
    protection = Protection(last_success=T0, target=DAY)
    first = decide_notice(protection, T0 + DAY / 2)
    assert first.notice is None and first.check_at == T0 + DAY

    at_risk = decide_notice(protection, T0 + DAY, hint="not on the corporate network")
    assert at_risk.notice.kind == "at_risk" and at_risk.warned
    assert "1 day old" in at_risk.notice.body and "Not on the corporate network." in at_risk.notice.body
    assert at_risk.check_at == math.inf

    warned = Protection(last_success=T0, target=DAY, warned=True)
    for later in (T0 + DAY + 1, T0 + 3 * DAY, T0 + 30 * DAY):
        assert decide_notice(warned, later).notice is None

    back = decide_notice(Protection(last_success=T0 + 31 * DAY, target=DAY, warned=True), T0 + 31 * DAY + 5)
    assert back.notice.kind == "protected" and back.notice.urgency == 0 and not back.warned
    assert back.check_at == T0 + 32 * DAY


def test_never_backed_up_counts_from_enrolment():
    protection = Protection(last_success=None, target=DAY, reference=T0)
    assert decide_notice(protection, T0 + 10).notice is None
    notice = decide_notice(protection, T0 + DAY).notice
    assert notice.kind == "at_risk" and "not been backed up yet" in notice.body


@given(st.lists(st.tuples(st.floats(0, 10 * DAY), st.booleans()), max_size=40))
def test_never_two_notices_of_a_kind_in_a_row(steps):
    """Whatever happens (time passing, backups succeeding), notices alternate."""
    now, last_success, warned, kinds = T0, T0, False, []
    for delay, succeeded in steps:
        now += delay
        if succeeded:
            last_success = now
        decision = decide_notice(Protection(last_success, DAY, warned), now)
        warned = decision.warned
        if decision.notice:
            kinds.append(decision.notice.kind)
        assert decision.check_at > now
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))


def test_age_text():
    assert [age_text(s) for s in (30, 60, 7200, 3 * DAY + 5)] == [
        "less than a minute", "1 minute", "2 hours", "3 days"]
