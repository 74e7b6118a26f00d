"""Mains or battery, and how charged, from UPower on the system bus. Without UPower
the power state is unknown and counts as mains, so desktops are never held back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from homesync.agent import dbus
from homesync.agent.policy import PowerState

log = logging.getLogger(__name__)

UPOWER = "org.freedesktop.UPower"
UPOWER_PATH = "/org/freedesktop/UPower"
DISPLAY_DEVICE = "/org/freedesktop/UPower/devices/DisplayDevice"
DEVICE = "org.freedesktop.UPower.Device"
_RELEVANT = {UPOWER: {"OnBattery"}, DEVICE: {"Percentage", "IsPresent"}}
UNKNOWN = PowerState(on_battery=False, percentage=None, known=False)

OnChange = Callable[[PowerState], None]


class PowerMonitor(Protocol):
    """What the scheduler needs from a power monitor."""

    state: PowerState

    async def start(self) -> PowerState: ...

    async def close(self) -> None: ...


class NullPowerMonitor:
    """The power monitor for hosts without UPower: always unknown, treated as mains."""

    def __init__(self, reason: str = "") -> None:
        self.state = UNKNOWN
        self.reason = reason

    async def start(self) -> PowerState:
        """Return the (constant) unknown state."""
        return self.state

    async def close(self) -> None:
        """Nothing to release."""


class UPowerMonitor:
    """Follows UPower's OnBattery and the display device's charge; calls on_change(state) on a change."""

    def __init__(self, bus: dbus.Bus, on_change: OnChange | None = None, *, owns_bus: bool = False,
                 timeout: float = dbus.DEFAULT_TIMEOUT) -> None:
        self.state = UNKNOWN
        self._bus, self._on_change, self._owns_bus, self._timeout = bus, on_change, owns_bus, timeout
        self._subscription: dbus.Subscription | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> PowerState:
        """Subscribe to UPower's property changes and return the current state; raise BusError."""
        self._subscription = await dbus.subscribe(
            self._bus, self._on_signal, sender=UPOWER, interface=dbus.PROPERTIES,
            member="PropertiesChanged", path_namespace=UPOWER_PATH, timeout=self._timeout)
        self.state = await self._read()
        log.info("power: %s", describe(self.state))
        return self.state

    async def close(self) -> None:
        """Unsubscribe and release the bus if this monitor opened it."""
        if self._subscription is not None:
            await self._subscription.cancel(timeout=self._timeout)
            self._subscription = None
        for task in self._tasks:
            task.cancel()
        if self._owns_bus:
            dbus.close(self._bus)

    async def refresh(self) -> PowerState:
        """Read UPower again, publish the state if it changed and return it."""
        state = await self._read()
        if state != self.state:
            self.state = state
            log.info("power: %s", describe(state))
            if self._on_change is not None:
                try:
                    self._on_change(state)
                except Exception:
                    log.exception("power change callback failed")
        return state

    async def _read(self) -> PowerState:
        """Return UPower's current state, or unknown if it does not answer."""
        try:
            on_battery = await dbus.get(self._bus, UPOWER, UPOWER_PATH, UPOWER, "OnBattery", timeout=self._timeout)
            return PowerState(on_battery=bool(on_battery), percentage=await self._percentage(), known=True)
        except dbus.BusError as exc:
            log.warning("cannot read UPower: %s", exc.message)
            return UNKNOWN

    async def _percentage(self) -> float | None:
        """Return the display device's charge, or None if there is no battery."""
        try:
            device: dict[str, Any] = await dbus.get_all(self._bus, UPOWER, DISPLAY_DEVICE, DEVICE,
                                                        timeout=self._timeout)
        except dbus.BusError as exc:
            log.debug("no UPower display device: %s", exc.message)
            return None
        if not device.get("IsPresent", True) or "Percentage" not in device:
            return None
        return float(device["Percentage"])

    def _on_signal(self, signal: dbus.Signal) -> None:
        args = signal.args
        if len(args) < 3 or not (_RELEVANT.get(args[0], set()) & (set(args[1]) | set(args[2]))):
            return
        task = asyncio.get_running_loop().create_task(self.refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def describe(state: PowerState) -> str:
    """Return the power state as short human text."""
    if not state.known:
        return "unknown (treated as mains)"
    if not state.on_battery:
        return "on mains"
    return "on battery" if state.percentage is None else f"on battery at {state.percentage:.0f}%"


async def open_power_monitor(on_change: OnChange | None = None, *, bus: dbus.Bus | None = None,
                             timeout: float = dbus.DEFAULT_TIMEOUT) -> PowerMonitor:
    """Return a started monitor: UPower's if it is on the system bus, else a null one. Never raises."""
    return await dbus.open_service_monitor(
        UPOWER, bus, lambda b, owns: UPowerMonitor(b, on_change, owns_bus=owns, timeout=timeout),
        _null, timeout=timeout)


def _null(reason: str) -> NullPowerMonitor:
    log.info("UPower not available: %s; treating power as mains", reason)
    return NullPowerMonitor(reason)
