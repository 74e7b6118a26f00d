"""UPowerMonitor against a fake UPower on a private system bus."""

from __future__ import annotations

import asyncio

from homesync.agent.policy import AgentState, DirtyState, NetworkView, PowerState, ServerView, decide
from homesync.agent.power import NullPowerMonitor, UPowerMonitor, open_power_monitor
from tests.integration.agent.waiting import eventually


def _run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_mains_then_battery_then_low(fake_upower):
    async def scenario():
        states = []
        monitor = await open_power_monitor(states.append)
        assert isinstance(monitor, UPowerMonitor)
        assert monitor.state == PowerState(on_battery=False, percentage=80.0, known=True)
        assert states == []  # the first state is returned, not called back
        fake_upower.set_on_battery(True)
        await eventually(lambda: monitor.state.on_battery)
        fake_upower.set_percentage(15)
        await eventually(lambda: monitor.state.percentage == 15.0)
        assert states[-1] == PowerState(on_battery=True, percentage=15.0, known=True)
        state = AgentState(dirty=DirtyState(possibly_dirty=True), power=monitor.state, server=ServerView(True, 0),
                           network=NetworkView(on_corporate=True, via="Dock", since=0))
        assert decide(state, 1).code == "low_battery"
        fake_upower.set_on_battery(False)
        await eventually(lambda: not monitor.state.on_battery)
        assert decide(state.but(power=monitor.state), 1).code == "link_up"
        await monitor.close()
    _run(scenario)


def test_no_battery_present_gives_no_percentage(system_bus, bus_services):
    from tests.support.fakebus import FakeUPower

    desktop = FakeUPower(bus_services, system_bus.address, present=False, percentage=0).start()

    async def scenario():
        monitor = await open_power_monitor()
        assert monitor.state == PowerState(on_battery=False, percentage=None, known=True)
        await monitor.close()
    _run(scenario)
    desktop.stop()


def test_no_upower_counts_as_mains(system_bus):
    async def scenario():
        monitor = await open_power_monitor(timeout=1)
        assert isinstance(monitor, NullPowerMonitor)
        assert monitor.state == PowerState(on_battery=False, percentage=None, known=False)
        assert "org.freedesktop.UPower is not on the system bus" in monitor.reason
    _run(scenario)


def test_no_system_bus_counts_as_mains(no_system_bus):
    async def scenario():
        monitor = await open_power_monitor(timeout=1)
        assert isinstance(monitor, NullPowerMonitor) and not monitor.state.known
    _run(scenario)
