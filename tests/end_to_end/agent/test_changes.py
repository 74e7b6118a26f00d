"""Changes while on the corporate network: backed up once they settle, and a burst of
10,000 changes gives one backup, not many. Real inotify, the real agent and server."""

from __future__ import annotations

import os
import time

from tests.end_to_end.agent.harness import wait_for
from tests.support.processes import chown_tree

DEBOUNCE = 2.0


def _first_backup(laptop, fake_nm) -> None:
    laptop.configure(agent={"debounce": f"{DEBOUNCE}s"})
    laptop.start()
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    wait_for(laptop.successes, 15, "the link-up backup")
    laptop.wait_status(lambda s: s["state"] == "idle", 5, "idle after the first backup")


def test_a_change_on_the_network_is_backed_up_once_it_settles(laptop, fake_nm):
    _first_backup(laptop, fake_nm)
    changed = time.monotonic()
    (laptop.home / "Documents/minutes.txt").write_text("decisions\n")
    # The watcher's thread counts the change a moment before the scheduler decides to
    # wait for it to settle: within the same 2 s, both must show.
    status = laptop.wait_status(lambda s: s["dirty"]["count"] > 0 and s["state"] == "waiting", 2,
                                "the change seen and waited for")
    assert status["reason"]["code"] == "settling"
    assert str(laptop.home / "Documents/minutes.txt") in status["dirty"]["sample"]
    time.sleep(DEBOUNCE / 2)
    assert len(laptop.successes()) == 1, "backed up before the change settled"

    wait_for(lambda: len(laptop.successes()) == 2, DEBOUNCE + 15, "the change backed up")
    print(f"change -> archive in the server's index: {time.monotonic() - changed:.2f} s "
          f"(debounce {DEBOUNCE:g} s)")
    assert laptop.wait_status(lambda s: s["state"] == "idle", 5, "idle")["dirty"]["count"] == 0


def test_a_burst_of_ten_thousand_changes_gives_one_backup(laptop, fake_nm):
    _first_backup(laptop, fake_nm)
    burst = laptop.home / "Documents/burst"
    burst.mkdir()
    started = time.monotonic()
    for i in range(10_000):
        with open(burst / f"f{i:05}.txt", "w") as f:
            f.write(str(i))
    chown_tree(burst)
    print(f"10,000 files written in {time.monotonic() - started:.2f} s")
    counted = laptop.wait_status(lambda s: s["dirty"]["count"] >= 10_000 or s["dirty"]["possibly_dirty"],
                                 10, "the burst counted")
    print(f"dirty count {counted['dirty']['count']}, possibly dirty {counted['dirty']['possibly_dirty']}")

    wait_for(lambda: len(laptop.successes()) == 2, DEBOUNCE + 30, "the burst backed up")
    time.sleep(DEBOUNCE + 2)  # anything left over would have started another backup by now
    assert len(laptop.archives()) == 2
    status = laptop.wait_status(lambda s: s["state"] == "idle", 5, "idle")
    assert status["dirty"]["count"] == 0
    assert os.path.exists(burst / "f09999.txt")
