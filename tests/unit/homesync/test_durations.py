"""One wording of a length of time: the largest unit that holds it one and a half times."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homesync.durations import duration


def test_each_unit_and_its_thresholds():
    assert duration(-5) == "0 s"
    assert duration(89) == "89 s"
    assert duration(90) == "2 min"
    assert duration(89 * 60) == "89 min"
    assert duration(90 * 60) == "1.5 h"
    assert duration(2 * 3600) == "2 h"
    assert duration(9.94 * 3600) == "9.9 h"
    assert duration(9.96 * 3600) == "10 h"
    assert duration(20 * 3600) == "20 h"
    assert duration(35 * 3600) == "35 h"
    assert duration(36 * 3600) == "2 d"
    assert duration(400 * 86400) == "400 d"


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_the_text_is_a_number_and_a_unit_that_read_back_close(seconds):
    value, unit = duration(seconds).split(" ")
    size = {"s": 1, "min": 60, "h": 3600, "d": 86400}[unit]
    # rounding to the shown digits: half a unit (half a tenth of an hour under ten hours) at most
    half = 0.05 if unit == "h" and float(value) < 10 else 0.5
    assert abs(float(value) * size - seconds) <= half * size + 1e-6
