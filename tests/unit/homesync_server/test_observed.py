"""observed.py: claims outside the session are flagged; the times to use are the server's."""

from homesync_server import observed
from homesync_server.retention import Archive

DAY = 86400.0


def test_a_claim_inside_the_session_give_or_take_the_tolerance_is_believed():
    assert observed.claim_problem(1000.0, 900.0, 1100.0) == ""
    assert observed.claim_problem(900.0 - observed.TOLERANCE, 900.0, 1100.0) == ""
    assert observed.claim_problem(1100.0 + observed.TOLERANCE, 900.0, 1100.0) == ""
    assert "outside the session" in observed.claim_problem(1101.0 + observed.TOLERANCE, 900.0, 1100.0)
    assert "outside the session" in observed.claim_problem(1e308, 900.0, 1100.0)
    assert observed.bounded(5.0, 10.0, 20.0) == 10.0 and observed.bounded(25.0, 10.0, 20.0) == 20.0


def test_trusted_uses_observed_times_and_leaves_flagged_and_future_archives_out():
    now = 100 * DAY
    listed = [Archive("real", now - DAY), Archive("reported", 50 * DAY), Archive("fake", now + 2000 * DAY),
              Archive("unobserved-future", now + DAY), Archive("legacy", now - 2 * DAY)]
    rows = {"real": {"observed": now - DAY + 5, "flag": ""}, "reported": {"observed": now - 10, "flag": ""},
            "fake": {"observed": now - 3, "flag": "claims 2031"}, "legacy": {"observed": None, "flag": ""}}
    trusted = observed.trusted(listed, rows, now)  # the older of observed and claimed
    assert [(a.name, a.time) for a in trusted.archives] == [
        ("reported", 50 * DAY), ("legacy", now - 2 * DAY), ("real", now - DAY)]
    assert set(trusted.flagged) == {"fake", "unobserved-future"}
