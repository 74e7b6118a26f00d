"""A private D-Bus for tests: a dbus-daemon of our own (system or session type) and fake
NetworkManager, UPower and notification services exported with dbus-fast under their
real bus names, object paths and interface names, driven from synchronous test code.
"""

import asyncio
import contextlib
import itertools
import os
import select
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from dbus_fast import PropertyAccess, Variant, unpack_variants
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

DBUS_DAEMON = shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
UPOWER = "org.freedesktop.UPower"
UPOWER_PATH = "/org/freedesktop/UPower"
DISPLAY_DEVICE = "/org/freedesktop/UPower/devices/DisplayDevice"
NOTIFICATIONS = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon listening on a socket in a temporary directory of its own."""

    def __init__(self, kind: str = "system") -> None:
        self.kind = kind
        self.directory = Path(tempfile.mkdtemp(prefix=f"hs-{kind}-bus-"))  # short: sockets have a 108-byte limit
        # Reachable by the unprivileged user the end-to-end tests run the agent as; the
        # bus policy below already lets any user connect.
        os.chmod(self.directory, 0o755)
        self.socket = self.directory / "bus"
        self.address = ""
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 5.0) -> "PrivateBus":
        """Start the daemon and wait for the address it prints once it listens."""
        config = self.directory / "bus.conf"
        config.write_text(_CONFIG.format(kind=self.kind, socket=self.socket))
        self._process = subprocess.Popen(
            [DBUS_DAEMON, f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        line = self._process.stdout.readline().decode().strip() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"dbus-daemon ({self.kind}) did not start")
        self.address = line
        return self

    def stop(self) -> None:
        """Stop the daemon and remove its directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdout, self._process.stderr) if self._process else ():
            stream.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class ServiceThread:
    """An asyncio loop in a background thread, where the fake services live."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-dbus-services", daemon=True)

    def start(self) -> "ServiceThread":
        self._thread.start()
        return self

    def run(self, coroutine, timeout: float = 5.0):
        """Run a coroutine on the service loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def _interface(class_name: str, interface_name: str, properties: dict, **members) -> type:
    """Return a ServiceInterface class with read-only properties {name: signature} kept in .values."""
    namespace = dict(members)

    def make_getter(name, signature):
        def getter(self):
            return self.values[name]
        getter.__name__ = name
        getter.__annotations__ = {"return": signature}
        return dbus_property(access=PropertyAccess.READ)(getter)

    for name, signature in properties.items():
        namespace[name] = make_getter(name, signature)

    def __init__(self, values):
        ServiceInterface.__init__(self, interface_name)
        self.values = dict(values)

    def update(self, **changes):
        """Change properties and announce them with PropertiesChanged."""
        self.values.update(changes)
        self.emit_properties_changed(changes)

    namespace.update(__init__=__init__, update=update)
    return type(class_name, (ServiceInterface,), namespace)


def _state_changed_u(self, state: "u") -> "u":
    return state


def _state_changed_uu(self, state, reason) -> "uu":
    return [state, reason]


_Manager = _interface("Manager", NM, {
    "State": "u", "PrimaryConnection": "o", "ActiveConnections": "ao", "Metered": "u", "Connectivity": "u",
    "NetworkingEnabled": "b", "Version": "s",
}, StateChanged=dbus_signal("StateChanged")(_state_changed_u))
_Active = _interface("ActiveConnection", f"{NM}.Connection.Active", {
    "Id": "s", "Uuid": "s", "Type": "s", "State": "u", "Devices": "ao", "Ip4Config": "o", "Dhcp4Config": "o",
    "Default": "b", "Vpn": "b", "SpecificObject": "o",
}, StateChanged=dbus_signal("StateChanged")(_state_changed_uu))
_IP4Config = _interface("IP4Config", f"{NM}.IP4Config", {
    "Gateway": "s", "Domains": "as", "Searches": "as", "NameserverData": "aa{sv}"})
_DHCP4Config = _interface("DHCP4Config", f"{NM}.DHCP4Config", {"Options": "a{sv}"})
_Device = _interface("Device", f"{NM}.Device", {"Interface": "s", "DeviceType": "u", "State": "u"})
_Wireless = _interface("Wireless", f"{NM}.Device.Wireless", {"ActiveAccessPoint": "o"})
_AccessPoint = _interface("AccessPoint", f"{NM}.AccessPoint", {"Ssid": "ay", "Strength": "y"})
_UPower = _interface("UPower", UPOWER, {"OnBattery": "b", "DaemonVersion": "s"})
_UPowerDevice = _interface("UPowerDevice", f"{UPOWER}.Device", {
    "Percentage": "d", "IsPresent": "b", "State": "u", "Type": "u"})


class FakeService:
    """A fake service on its own bus connection, living on the service thread's loop.

    Subclasses set `name` and export their objects in `_export(bus)`. Every control runs
    on the service loop, so tests may call them from any thread.
    """

    name = ""

    def __init__(self, services: ServiceThread, address: str) -> None:
        self.services, self.address = services, address
        self._bus: MessageBus | None = None

    def start(self):
        """Connect, export the objects and take the well-known name."""
        self.services.run(self._start())
        return self

    async def _start(self) -> None:
        self._bus = await MessageBus(bus_address=self.address).connect()
        self._export(self._bus)
        await self._bus.request_name(self.name)

    def _export(self, bus: MessageBus) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Leave the bus, as the real service does when it stops; safe to call twice."""
        if self._bus is not None:
            self.services.run(self._stop())
            self._bus = None

    async def _stop(self) -> None:
        self._bus.disconnect()
        with contextlib.suppress(Exception):  # the daemon itself may have gone first
            await self._bus.wait_for_disconnect()

    def update(self, interface, **changes) -> None:
        """Change properties of an exported interface and announce them (from any thread)."""
        self.services.run(_on_loop(interface.update, **changes))


async def _on_loop(function, *args, **kwargs):
    return function(*args, **kwargs)


class _Connection:
    """The objects behind one active connection."""

    def __init__(self, path: str, active, exports: list) -> None:
        self.path, self.active, self.exports = path, active, exports


class FakeNetworkManager(FakeService):
    """NetworkManager's manager, active connections, IP4/DHCP4 configs, devices and access points."""

    name = NM

    def __init__(self, services: ServiceThread, address: str) -> None:
        super().__init__(services, address)
        self.connections: dict[str, _Connection] = {}
        self._numbers = itertools.count(1)
        self.manager = _Manager({
            "State": 20, "PrimaryConnection": "/", "ActiveConnections": [], "Metered": 4, "Connectivity": 1,
            "NetworkingEnabled": True, "Version": "1.42.4-fake"})

    def _export(self, bus: MessageBus) -> None:
        bus.export(NM_PATH, self.manager)

    def connection_up(self, id: str, *, uuid: str | None = None, type: str = "802-3-ethernet",
                      domains=(), searches=(), dhcp: dict | None = None, ssid: bytes | str | None = None,
                      vpn: bool = False, activating_for: float = 0.0) -> str:
        """Activate a connection (state 1 for activating_for seconds, then 2); return its path."""
        return self.services.run(self._up(id, uuid, type, list(domains), list(searches), dhcp or {},
                                          ssid, vpn, activating_for))

    async def _up(self, id, uuid, type, domains, searches, dhcp, ssid, vpn, activating_for) -> str:
        n = next(self._numbers)
        exports = []

        def export(path, *interfaces):
            for interface in interfaces:
                self._bus.export(path, interface)
                exports.append((path, interface))
            return path

        device = export(f"{NM_PATH}/Devices/{n}", _Device({
            "Interface": f"eth{n}", "DeviceType": 2 if type == "802-11-wireless" else 1, "State": 100}),
            *([_Wireless({"ActiveAccessPoint": "/"})] if type == "802-11-wireless" else []))
        access_point = "/"
        if ssid is not None:
            raw = ssid.encode() if isinstance(ssid, str) else bytes(ssid)
            access_point = export(f"{NM_PATH}/AccessPoint/{n}", _AccessPoint({"Ssid": raw, "Strength": 70}))
            wireless = next(i for p, i in exports if p == device and i.name.endswith("Wireless"))
            wireless.values["ActiveAccessPoint"] = access_point
        ip4 = export(f"{NM_PATH}/IP4Config/{n}", _IP4Config({
            "Gateway": "192.0.2.1", "Domains": domains, "Searches": searches,
            "NameserverData": [{"address": Variant("s", "192.0.2.53")}]}))
        options = {key: Variant("s", value) for key, value in {"routers": "192.0.2.1", **dhcp}.items()}
        dhcp4 = export(f"{NM_PATH}/DHCP4Config/{n}", _DHCP4Config({"Options": options}))
        active = _Active({
            "Id": id, "Uuid": uuid or f"00000000-0000-4000-8000-{n:012d}", "Type": type,
            "State": 1 if activating_for else 2, "Devices": [device], "Ip4Config": ip4, "Dhcp4Config": dhcp4,
            "Default": not self.connections, "Vpn": vpn, "SpecificObject": access_point})
        path = export(f"{NM_PATH}/ActiveConnection/{n}", active)
        self.connections[id] = _Connection(path, active, exports)
        self._publish_active()
        if activating_for:
            self.services.loop.call_later(activating_for, self._activated, active)
        return path

    def _activated(self, active) -> None:
        active.update(State=2)
        active.StateChanged(2, 0)

    def connection_down(self, id: str) -> None:
        """Deactivate a connection and remove its objects."""
        self.services.run(self._down(id))

    async def _down(self, id: str) -> None:
        connection = self.connections.pop(id)
        connection.active.update(State=4)
        connection.active.StateChanged(4, 2)
        self._publish_active()
        for path, interface in connection.exports:
            self._bus.unexport(path, interface)

    def set_metered(self, value: int) -> None:
        """Set Metered (1 yes, 2 no, 3 guess-yes, 4 guess-no) and announce it."""
        self.update(self.manager, Metered=value)

    def set_domains(self, id: str, domains=(), searches=()) -> None:
        """Change an active connection's IP4Config domains (as after a DHCP renewal)."""
        connection = self.connections[id]
        ip4 = next(i for _, i in connection.exports if i.name.endswith("IP4Config"))
        self.update(ip4, Domains=list(domains), Searches=list(searches))

    def _publish_active(self) -> None:
        paths = [c.path for c in self.connections.values()]
        state = 70 if paths else 20
        self.manager.update(ActiveConnections=paths, PrimaryConnection=paths[0] if paths else "/",
                            State=state, Connectivity=4 if paths else 1)
        self.manager.StateChanged(state)


class FakeUPower(FakeService):
    """UPower with OnBattery and the display device's Percentage."""

    name = UPOWER

    def __init__(self, services: ServiceThread, address: str, *, on_battery: bool = False,
                 percentage: float = 80.0, present: bool = True) -> None:
        super().__init__(services, address)
        self.upower = _UPower({"OnBattery": on_battery, "DaemonVersion": "1.90-fake"})
        self.display = _UPowerDevice({"Percentage": float(percentage), "IsPresent": present, "State": 2,
                                      "Type": 2})

    def _export(self, bus: MessageBus) -> None:
        bus.export(UPOWER_PATH, self.upower)
        bus.export(DISPLAY_DEVICE, self.display)

    def set_on_battery(self, on_battery: bool) -> None:
        self.update(self.upower, OnBattery=on_battery)

    def set_percentage(self, percentage: float) -> None:
        self.update(self.display, Percentage=float(percentage))


class _NotificationService(ServiceInterface):
    def __init__(self, record) -> None:
        super().__init__(NOTIFICATIONS)
        self._record = record
        self._ids = itertools.count(1)

    @dbus_method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s", body: "s",
               actions: "as", hints: "a{sv}", expire_timeout: "i") -> "u":
        notification_id = replaces_id or next(self._ids)
        self._record({"id": notification_id, "app_name": app_name, "replaces_id": replaces_id,
                      "app_icon": app_icon, "summary": summary, "body": body, "actions": actions,
                      "hints": unpack_variants(hints), "expire_timeout": expire_timeout})
        return notification_id

    @dbus_method()
    def GetServerInformation(self) -> "ssss":
        return ["homesync-fake-notifications", "homesync", "1.0", "1.2"]

    @dbus_method()
    def GetCapabilities(self) -> "as":
        return ["body"]

    @dbus_method()
    def CloseNotification(self, notification_id: "u"):
        return None


class FakeNotifications(FakeService):
    """org.freedesktop.Notifications recording every Notify call in .calls."""

    name = NOTIFICATIONS

    def __init__(self, services: ServiceThread, address: str) -> None:
        super().__init__(services, address)
        self.calls: list[dict] = []
        self._changed = threading.Condition()

    def _export(self, bus: MessageBus) -> None:
        bus.export(NOTIFICATIONS_PATH, _NotificationService(self._record))

    def _record(self, call: dict) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def wait_for_calls(self, count: int, timeout: float = 2.0) -> list[dict]:
        """Wait until at least count notifications arrived; return them all."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)


def _bus_fixture(kind: str):
    """A fixture `<kind>_bus`: a private bus of that kind, which DBUS_<KIND>_BUS_ADDRESS
    points at for the code under test."""

    def fixture(monkeypatch):
        bus = PrivateBus(kind).start()
        monkeypatch.setenv(f"DBUS_{kind.upper()}_BUS_ADDRESS", bus.address)
        yield bus
        bus.stop()

    fixture.__name__ = f"{kind}_bus"
    return pytest.fixture(name=fixture.__name__)(fixture)


system_bus = _bus_fixture("system")
session_bus = _bus_fixture("session")


@pytest.fixture
def bus_services():
    """The background thread and loop where fake services run."""
    services = ServiceThread().start()
    yield services
    services.stop()


def _service_fixture(name: str, service: type, bus: str):
    """A fixture `name`: service started on the bus of fixture `bus`, stopped after the test."""

    def fixture(request, bus_services):
        started = service(bus_services, request.getfixturevalue(bus).address).start()
        yield started
        started.stop()

    fixture.__name__ = name
    return pytest.fixture(name=name)(fixture)


fake_nm = _service_fixture("fake_nm", FakeNetworkManager, "system_bus")
fake_upower = _service_fixture("fake_upower", FakeUPower, "system_bus")
fake_notifications = _service_fixture("fake_notifications", FakeNotifications, "session_bus")


@pytest.fixture
def no_system_bus(monkeypatch, tmp_path):
    """DBUS_SYSTEM_BUS_ADDRESS pointing at a socket that does not exist."""
    missing = tmp_path / "no-such-socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={missing}")
    assert not os.path.exists(missing)
    return missing
