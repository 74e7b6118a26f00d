"""NetworkManagerMonitor against a fake NetworkManager on a private system bus."""

from __future__ import annotations

import asyncio
import socket

import pytest

from homesync.agent import reachability
from homesync.agent.netwatch import NetworkManagerMonitor, NetworkRules, NullMonitor, open_network_monitor
from homesync.agent.policy import AgentState, DirtyState, History, Probe, Run, decide
from tests.integration.agent.waiting import eventually
from tests.support.fakebus import FakeNetworkManager

RULES = NetworkRules(corporate_domains=("corp.example.com",), corporate_ssids=("CorpWiFi",),
                     corporate_connections=("Corp VPN", "7d4bd0b4-5b43-4a6e-9c3d-0a6f5bbd1f00"))


async def _monitor(views: list | None = None) -> NetworkManagerMonitor:
    monitor = await open_network_monitor(RULES, None if views is None else views.append)
    assert isinstance(monitor, NetworkManagerMonitor), monitor.view
    return monitor


def _run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 10))


@pytest.mark.parametrize("settings", [
    {"domains": ["corp.example.com"]},
    {"domains": ["~corp.example.com"]},
    {"searches": ["eng.corp.example.com"]},
    {"dhcp": {"domain_name": "corp.example.com"}},
    {"dhcp": {"domain_search": "example.org lab.corp.example.com"}},
], ids=["ip4-domains", "routing-domain", "ip4-searches", "dhcp-domain-name", "dhcp-domain-search"])
def test_matches_by_domain(fake_nm, settings):
    async def scenario():
        monitor = await _monitor()
        assert not monitor.view.on_corporate and monitor.view.known
        fake_nm.connection_up("Office", **settings)
        await eventually(lambda: monitor.view.on_corporate, what="on the corporate network")
        assert monitor.view.via == "Office" and monitor.view.since is not None
        await monitor.close()
    _run(scenario)


def test_a_lookalike_domain_does_not_match(fake_nm):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Cafe", domains=["badcorp.example.com"], dhcp={"domain_name": "corp.example.com.evil"})
        await eventually(lambda: "Cafe" in monitor.view.reason)
        assert not monitor.view.on_corporate
        assert monitor.view.reason == "no active connection matches the [network] rules (active: Cafe)"
        await monitor.close()
    _run(scenario)


def test_matches_by_ssid_of_the_active_access_point(fake_nm):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Guest", type="802-11-wireless", ssid=b"CorpWiFi-Guest\xff")
        await eventually(lambda: monitor.connections and monitor.connections[0].ssid is not None)
        assert not monitor.view.on_corporate
        fake_nm.connection_up("Corporate Wi-Fi", type="802-11-wireless", ssid="CorpWiFi")
        await eventually(lambda: monitor.view.on_corporate)
        assert monitor.view.via == "Corporate Wi-Fi"
        await monitor.close()
    _run(scenario)


@pytest.mark.parametrize("name, uuid", [("Corp VPN", None), ("vpn0", "7d4bd0b4-5b43-4a6e-9c3d-0a6f5bbd1f00")])
def test_matches_by_connection_id_or_uuid(fake_nm, name, uuid):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Home", type="802-11-wireless", ssid="HomeNet")
        fake_nm.connection_up(name, uuid=uuid, type="vpn", vpn=True)
        await eventually(lambda: monitor.view.on_corporate)
        assert monitor.view.via == name
        await monitor.close()
    _run(scenario)


def test_dock_beside_wifi_where_only_the_dock_matches(fake_nm):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Home", type="802-11-wireless", ssid="HomeNet")  # primary
        fake_nm.connection_up("Dock", dhcp={"domain_name": "corp.example.com"})
        await eventually(lambda: monitor.view.on_corporate)
        assert monitor.view.via == "Dock"
        assert [c.id for c in monitor.connections] == ["Home", "Dock"]
        fake_nm.connection_down("Dock")
        await eventually(lambda: not monitor.view.on_corporate)
        assert monitor.view.reason.endswith("(active: Home)")
        await monitor.close()
    _run(scenario)


def test_link_down_is_seen_within_a_second_and_calls_back(fake_nm):
    async def scenario():
        views = []
        monitor = await _monitor(views)
        fake_nm.connection_up("Office", domains=["corp.example.com"])
        up = await eventually(lambda: views and views[-1].on_corporate)
        fake_nm.connection_down("Office")
        down = await eventually(lambda: not views[-1].on_corporate)
        assert up < 1.0 and down < 1.0
        assert [v.on_corporate for v in views] == [True, False]
        assert views[-1].since is None
        await monitor.close()
    _run(scenario)


def test_activating_connection_counts_once_activated(fake_nm):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Corp VPN", type="vpn", vpn=True, activating_for=0.2)
        await eventually(lambda: monitor.connections)
        assert monitor.connections[0].state == 1 and not monitor.view.on_corporate
        await eventually(lambda: monitor.view.on_corporate, timeout=2)
        await monitor.close()
    _run(scenario)


def test_domains_arriving_later_are_seen(fake_nm):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Office")
        await eventually(lambda: monitor.connections)
        fake_nm.set_domains("Office", searches=["corp.example.com"])
        await eventually(lambda: monitor.view.on_corporate)
        await monitor.close()
    _run(scenario)


@pytest.mark.parametrize("value, metered", [(1, True), (3, True), (2, False), (4, False)])
def test_metered(fake_nm, value, metered):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Phone", domains=["corp.example.com"])
        await eventually(lambda: monitor.view.on_corporate)
        fake_nm.set_metered(value)
        await eventually(lambda: monitor.view.metered is metered)
        await asyncio.sleep(0.02)
        assert monitor.view.metered is metered
        await monitor.close()
    _run(scenario)


def test_networkmanager_stopping_makes_the_network_unknown(fake_nm):
    async def scenario():
        monitor = await _monitor()
        fake_nm.connection_up("Office", domains=["corp.example.com"])
        await eventually(lambda: monitor.view.on_corporate)
        fake_nm.stop()
        await eventually(lambda: not monitor.view.known)
        assert monitor.view.reason == \
            "NetworkManager not available: org.freedesktop.NetworkManager is not on the system bus"
        await monitor.close()
    _run(scenario)


def test_networkmanager_coming_back_is_followed(fake_nm, system_bus, bus_services):
    async def scenario():
        monitor = await _monitor()
        fake_nm.stop()
        await eventually(lambda: not monitor.view.known)
        again = FakeNetworkManager(bus_services, system_bus.address).start()
        again.connection_up("Office", domains=["corp.example.com"])
        await eventually(lambda: monitor.view.on_corporate)
        again.stop()
        await monitor.close()
    _run(scenario)


def test_losing_the_system_bus_makes_the_network_unknown(fake_nm, system_bus):
    async def scenario():
        views = []
        monitor = await _monitor(views)
        fake_nm.connection_up("Office", domains=["corp.example.com"])
        await eventually(lambda: monitor.view.on_corporate)
        system_bus.stop()
        await eventually(lambda: not monitor.view.known)
        assert views[-1].reason == "NetworkManager not available: lost the system bus"
        await monitor.close()
    _run(scenario)


def test_no_networkmanager_on_the_bus_gives_a_null_monitor(system_bus):
    async def scenario():
        monitor = await open_network_monitor(RULES, lambda v: None, timeout=1)
        assert isinstance(monitor, NullMonitor)
        assert not monitor.view.known and not monitor.view.on_corporate
        assert monitor.view.reason == \
            "NetworkManager not available: org.freedesktop.NetworkManager is not on the system bus"
        await monitor.close()
    _run(scenario)


def test_no_system_bus_at_all_gives_a_null_monitor(no_system_bus):
    async def scenario():
        monitor = await open_network_monitor(RULES, timeout=1)
        assert isinstance(monitor, NullMonitor)
        assert monitor.view.reason.startswith("NetworkManager not available: no system bus (cannot connect")
    _run(scenario)


def test_garbage_bus_address_gives_a_null_monitor(monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "not-an-address")

    async def scenario():
        monitor = await open_network_monitor(RULES, timeout=1)
        assert isinstance(monitor, NullMonitor) and "no system bus" in monitor.view.reason
    _run(scenario)


def test_probe_server():
    async def scenario():
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        answered = await reachability.probe_server("127.0.0.1", port, timeout=1)
        assert answered.ok, answered.detail
        silent = await reachability.probe_server("127.0.0.1", port, timeout=0.2, banner=b"SSH-")
        assert not silent.ok and silent.detail.endswith("no greeting in time")
        listener.close()
        refused = await reachability.probe_server("127.0.0.1", port, timeout=1)
        assert not refused.ok and refused.elapsed < 1
    _run(scenario)


def test_probe_server_reads_the_ssh_greeting():
    async def scenario():
        async def greet(reader, writer):
            writer.write(b"SSH-2.0-homesync\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        result = await reachability.probe_server("127.0.0.1", port, timeout=1, banner=b"SSH-")
        assert result.ok, result.detail
        server.close()
        await server.wait_closed()
    _run(scenario)


def test_link_up_to_run_decision_is_fast(fake_nm):
    """The parts together: link-up → view → decide → probe → Run, well within 2 s."""
    async def scenario():
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        monitor = await _monitor()
        state = AgentState(dirty=DirtyState(possibly_dirty=True), history=History(last_success=0, last_attempt=0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        fake_nm.connection_up("Office", domains=["corp.example.com"])
        await eventually(lambda: monitor.view.on_corporate)
        state = state.but(network=monitor.view)
        now = monitor.view.since
        decision = decide(state, now)
        assert isinstance(decision, Probe)
        result = await reachability.probe_server("127.0.0.1", port)
        state = state.but(server=state.server.after_probe(result.ok, now))
        assert decide(state, now) == Run("link_up", "the corporate network came up via Office")
        assert loop.time() - started < 0.5
        listener.close()
        await monitor.close()
    _run(scenario)
