"""A machine retired on the server: the real agent stops retrying (no attempt after the
first refusal), says why in `homesync status`, and shows one notification, not again
after a restart."""

from __future__ import annotations

import time

from tests.end_to_end.agent.harness import wait_for


def test_a_retired_machine_stops_the_agent_retrying(laptop, fake_nm, fake_notifications):
    # retries 1-2 s apart (FAST's are 2-10 s): each quiet window below spans a whole retry
    laptop.configure(agent={"recovery_point_target": "1s", "retry_min": "1s", "retry_max": "2s"})
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    laptop.start()
    wait_for(laptop.successes, 30, "a first backup")
    done = laptop.server.cli("machine", "retire", "--machine", laptop.machine_id)
    assert done.returncode == 0, done.stderr
    (laptop.home / "Documents/new.txt").write_text("after the retirement\n")
    status = laptop.wait_status(lambda s: s["reason"] and s["reason"]["code"] == "revoked", 60, "the revoked state")
    assert status["state"] == "stopped" and "was retired by an admin on" in status["reason"]["text"], status
    attempt = status["last_attempt"]
    for i in range(3):  # changes and the retry interval (1-2 s) no longer bring attempts
        (laptop.home / f"Documents/more-{i}.txt").write_text("more\n")
        time.sleep(2.5)
    status = laptop.ask()
    assert status["last_attempt"] == attempt and status["reason"]["code"] == "revoked", status
    text = laptop.status().stdout
    assert "stopped" in text and "was retired by an admin" in text, text
    notices = [c for c in fake_notifications.calls if c["summary"] == "This computer is no longer backed up"]
    assert len(notices) == 1 and "was retired by an admin" in notices[0]["body"], fake_notifications.calls
    assert laptop.stop() == 0
    laptop.start()  # remembers the revocation and that it said so
    time.sleep(3)
    status = laptop.ask()
    assert status["reason"]["code"] == "revoked" and status["last_attempt"] == attempt, status
    assert len([c for c in fake_notifications.calls if c["summary"] == "This computer is no longer backed up"]) == 1
