"""Desktop notifications from the real agent on a fake org.freedesktop.Notifications:
"at risk" once when the last backup is older than the recovery-point target (not again
after a restart), and "protected again" once after the next backup."""

from __future__ import annotations

import time

from tests.end_to_end.agent.harness import wait_for

TARGET = 3.0


def test_at_risk_once_then_protected_again(laptop, fake_nm, fake_notifications):
    laptop.configure(agent={"recovery_point_target": f"{TARGET:g}s"})
    laptop.start()
    [at_risk] = wait_for(lambda: fake_notifications.calls, TARGET + 10, "the at-risk notice")
    assert at_risk["summary"] == "Your files are not backed up"
    assert at_risk["body"] == ("This computer has not been backed up yet. Not on the corporate network "
                               "(no active connection matches the [network] rules (active: none)).")
    time.sleep(2)
    fake_nm.connection_up("Cafe", ssid="CafeWiFi", type="802-11-wireless")
    fake_nm.connection_down("Cafe")
    time.sleep(1)
    assert len(fake_notifications.calls) == 1, "notified again while still off the network"

    assert laptop.stop() == 0
    laptop.start()  # remembers that it warned
    time.sleep(2)
    assert len(fake_notifications.calls) == 1, "notified again after a restart"

    fake_nm.connection_up("Office", domains=["corp.example.com"])
    wait_for(laptop.successes, 15, "a backup")
    at_risk, protected = fake_notifications.wait_for_calls(2, timeout=5)
    assert protected["summary"] == "Your files are backed up again"
    time.sleep(1)
    assert len(fake_notifications.calls) == 2
