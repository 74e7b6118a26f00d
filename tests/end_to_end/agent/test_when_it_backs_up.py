"""When the agent backs up by itself, and when it does not (and says why): the real agent
against the real server, NetworkManager and UPower faked on a private system bus."""

from __future__ import annotations

import time

import pytest

from tests.end_to_end.agent.harness import wait_for

BACKUP_BOUND = 15.0  # seconds from link-up to the archive in the server's index (measured: ~1.5 s)
QUIET = 2.0          # how long "no backup" is watched for


@pytest.fixture(scope="module")
def laptop_server(homesync_server):
    """One server for the module: each test's laptop is a machine of its own, and every
    check here reads that machine's rows only."""
    return homesync_server


def _off_network(status: dict) -> bool:
    return status["reason"] is not None and status["reason"]["code"] == "off_network"


def test_link_up_on_a_matching_connection_backs_up(laptop, fake_nm):
    laptop.start()
    laptop.wait_status(_off_network, 10, "the agent waiting for the corporate network")
    assert laptop.archives() == []

    up = time.monotonic()
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    wait_for(laptop.successes, BACKUP_BOUND, "a backup after the link came up")
    latency = time.monotonic() - up
    print(f"link-up -> archive in the server's index: {latency:.2f} s")

    status = laptop.wait_status(lambda s: s["state"] == "idle", 5, "idle after the backup")
    assert status["network"] == dict(status["network"], known=True, on_corporate=True, via="Office",
                                     monitor="NetworkManager")
    assert status["last_success"] is not None and status["last_result"]["result"] == "success"
    assert status["dirty"]["count"] == 0 and not status["dirty"]["possibly_dirty"]
    text = laptop.status()
    assert text.returncode == 0
    assert "on the corporate network via Office" in text.stdout and "Last backup:" in text.stdout
    wait_for(lambda: laptop.agent_report()[0] == "idle", 10, "the server told the agent is idle")


def test_a_connection_that_does_not_match_is_no_reason_to_back_up(laptop, fake_nm):
    laptop.start()
    fake_nm.connection_up("Cafe", type="802-11-wireless", ssid="CafeWiFi", dhcp={"domain_name": "cafe.example.net"})
    status = laptop.wait_status(lambda s: _off_network(s) and "Cafe" in s["reason"]["text"], 10, "off network via Cafe")
    assert status["state"] == "waiting" and status["network"]["on_corporate"] is False
    time.sleep(QUIET)
    assert laptop.archives() == []

    cli = laptop.status_json()
    assert cli["reason"]["text"] == ("not on the corporate network (no active connection matches the [network] "
                                     "rules (active: Cafe))")
    assert "Why not now:  not on the corporate network" in laptop.status().stdout
    # the admins see why this laptop is not backing up
    state, reason = wait_for(lambda: (r := laptop.agent_report())[1].startswith("not on the corporate") and r,
                             10, "the skip reason in the server's index")
    assert state == "waiting" and "active: Cafe" in reason


def test_a_metered_corporate_connection_is_skipped(laptop, fake_nm):
    fake_nm.set_metered(1)
    laptop.start()
    fake_nm.connection_up("Corp VPN", type="vpn", vpn=True)
    status = laptop.wait_status(lambda s: s["reason"] and s["reason"]["code"] == "metered", 10, "metered skip")
    assert status["reason"]["text"] == "the connection Corp VPN is metered"
    assert status["network"]["on_corporate"] and status["network"]["metered"]
    time.sleep(QUIET)
    assert laptop.archives() == []
    wait_for(lambda: laptop.agent_report() == ("waiting", "the connection Corp VPN is metered"), 10,
             "the metered reason in the server's index")


def test_on_battery_below_the_threshold_waits_for_mains(laptop, fake_nm, fake_upower):
    fake_upower.set_on_battery(True)
    fake_upower.set_percentage(12)
    laptop.start()
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    status = laptop.wait_status(lambda s: s["reason"] and s["reason"]["code"] == "low_battery", 10, "low battery")
    assert status["reason"]["text"] == "on battery at 12% (below 20%)"
    time.sleep(QUIET)
    assert laptop.archives() == []

    plugged = time.monotonic()
    fake_upower.set_on_battery(False)
    wait_for(laptop.successes, BACKUP_BOUND, "a backup once on mains")
    print(f"mains -> archive in the server's index: {time.monotonic() - plugged:.2f} s")


def test_a_dock_beside_wifi_backs_up_when_only_the_dock_matches(laptop, fake_nm):
    laptop.start()
    fake_nm.connection_up("Home", type="802-11-wireless", ssid="HomeNet")  # the primary connection
    laptop.wait_status(lambda s: _off_network(s) and "Home" in s["reason"]["text"], 10, "off network via Home")
    fake_nm.connection_up("Dock", dhcp={"domain_name": "corp.example.com"})
    wait_for(laptop.successes, BACKUP_BOUND, "a backup through the dock")
    assert laptop.ask()["network"]["via"] == "Dock"


@pytest.mark.parametrize("bus", ["no NetworkManager on the bus", "no system bus"])
def test_without_networkmanager_it_backs_up_when_the_server_answers(laptop, bus, tmp_path):
    if bus == "no system bus":
        laptop.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-such-socket"
    started = time.monotonic()
    laptop.start()
    wait_for(laptop.successes, BACKUP_BOUND, "a backup with the server reachable")
    print(f"agent start -> archive in the server's index: {time.monotonic() - started:.2f} s")
    status = laptop.status_json()
    assert status["network"]["known"] is False and status["network"]["monitor"] == "none"
    assert status["server"]["reachable"] is True
    assert any("NetworkManager not available" in w for w in status["warnings"])
    assert "NetworkManager is not available" in laptop.status().stdout
