"""Is this computer on the corporate network, and through which connection?

Pure matching of NetworkManager's active connections against the [network] rules, a
monitor that follows NetworkManager on the system bus, and a null monitor for hosts
without it (the agent then relies on homesync.agent.reachability).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from homesync.agent import dbus
from homesync.agent.policy import NetworkView
from homesync.config import NetworkSettings

log = logging.getLogger(__name__)

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
ACTIVE = f"{NM}.Connection.Active"
IP4 = f"{NM}.IP4Config"
DHCP4 = f"{NM}.DHCP4Config"
WIRELESS = f"{NM}.Device.Wireless"
ACCESS_POINT = f"{NM}.AccessPoint"
ACTIVATED = 2
METERED_YES = (1, 3)  # yes, guess-yes
WIFI = "802-11-wireless"
LOST_BUS = "lost the system bus"
NO_RULES = ("no corporate-network rule is set (neither in config.toml nor in the fleet policy): "
            "the backup server answering counts as the corporate link")
# Only these properties can change the answer; NetworkManager also announces signal
# strength and statistics, which must not wake the agent.
_RELEVANT = {
    NM: {"ActiveConnections", "Metered", "State", "PrimaryConnection"},
    ACTIVE: None,
    IP4: {"Domains", "Searches"},
    DHCP4: {"Options"},
    WIRELESS: {"ActiveAccessPoint"},
    ACCESS_POINT: {"Ssid"},
}

OnChange = Callable[[NetworkView], None]


# The [network] table of the agent's configuration: what counts as corporate.
NetworkRules = NetworkSettings


@dataclass(frozen=True)
class ActiveConnection:
    """What NetworkManager says about one active connection, read in one go."""

    id: str
    uuid: str = ""
    type: str = ""
    state: int = ACTIVATED
    vpn: bool = False
    default: bool = False
    domains: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    dhcp_domain_name: str = ""
    dhcp_domain_search: str = ""
    ssid: bytes | None = None

    def dns_domains(self) -> list[str]:
        """Return every DNS and search domain of the connection, normalised."""
        raw = [*self.domains, *self.searches, *_split(self.dhcp_domain_name), *_split(self.dhcp_domain_search)]
        return [domain for domain in map(_normal_domain, raw) if domain]


def matches(rules: NetworkRules, connections: Iterable[ActiveConnection]) -> tuple[bool, str | None]:
    """Given the rules and the active connections, return (on_corporate, id of the matching one)."""
    for connection in connections:
        if connection.state == ACTIVATED and _matches_one(rules, connection):
            return True, connection.id
    return False, None


def has_rules(rules: NetworkRules) -> bool:
    """Return True if any rule says what the corporate network is."""
    return bool(rules.corporate_domains or rules.corporate_ssids or rules.corporate_connections)


def _matches_one(rules: NetworkRules, connection: ActiveConnection) -> bool:
    """Return True if one activated connection matches any rule."""
    names = {connection.id.casefold(), connection.uuid.casefold()} - {""}
    if any(wanted.casefold() in names for wanted in rules.corporate_connections):
        return True
    if connection.ssid is not None and connection.ssid in {s.encode() for s in rules.corporate_ssids}:
        return True
    wanted_domains = [d for d in map(_normal_domain, rules.corporate_domains) if d]
    return any(_in_domain(domain, wanted) for domain in connection.dns_domains() for wanted in wanted_domains)


def _in_domain(domain: str, wanted: str) -> bool:
    """Return True if domain is wanted or a subdomain of it (not merely ending in the same letters)."""
    return domain == wanted or domain.endswith("." + wanted)


def _normal_domain(domain: str) -> str:
    """Return a domain lower-cased without NetworkManager's routing-only "~" and outer dots."""
    return domain.strip().lstrip("~").strip(".").lower()


def _split(value: str) -> list[str]:
    """Split a DHCP option that may hold several domains."""
    return [part for part in re.split(r"[\s,;]+", value or "") if part]


class NetworkMonitor(Protocol):
    """What the scheduler needs from a network monitor."""

    view: NetworkView

    async def start(self) -> NetworkView: ...

    async def close(self) -> None: ...


class NullMonitor:
    """The monitor for hosts without NetworkManager: the network is unknown, the agent relies
    on whether the server is reachable."""

    def __init__(self, reason: str) -> None:
        self.view = NetworkView(known=False, reason=f"NetworkManager not available: {reason}")

    async def start(self) -> NetworkView:
        """Return the (constant) view."""
        return self.view

    async def close(self) -> None:
        """Nothing to release."""


class NetworkManagerMonitor:
    """Follows NetworkManager's active connections and calls on_change(view) when the answer changes.

    on_change runs in the event loop, synchronously; it must not block.
    """

    def __init__(self, bus: dbus.Bus, rules: NetworkRules, on_change: OnChange | None = None, *,
                 clock: Callable[[], float] = time.time, owns_bus: bool = False,
                 timeout: float = dbus.DEFAULT_TIMEOUT) -> None:
        self.view = NetworkView(known=False, reason="NetworkManager not read yet")
        self.connections: list[ActiveConnection] = []
        self._bus, self._rules, self._on_change = bus, rules, on_change
        self._clock, self._owns_bus, self._timeout = clock, owns_bus, timeout
        self._subscriptions: list[dbus.Subscription] = []
        self._task: asyncio.Task | None = None
        self._bus_watch: asyncio.Task | None = None
        self._refresh_wanted = False

    async def start(self) -> NetworkView:
        """Subscribe to NetworkManager's signals, read the current state and return it; raise BusError."""
        subscribe = self._subscribe
        await subscribe(sender=NM, interface=dbus.PROPERTIES, member="PropertiesChanged",
                        path_namespace=NM_PATH)
        await subscribe(sender=NM, member="StateChanged", path_namespace=NM_PATH)
        await subscribe(sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                        member="NameOwnerChanged", arg0=NM)
        self.connections, self.view = await self._read_view()
        log.info("network: %s", self.view.reason)
        self._bus_watch = asyncio.get_running_loop().create_task(self._follow_bus())
        return self.view

    async def close(self) -> None:
        """Unsubscribe, stop pending reads and release the bus if this monitor opened it."""
        for subscription in self._subscriptions:
            await subscription.cancel(timeout=self._timeout)
        self._subscriptions.clear()
        for task in (self._task, self._bus_watch):
            if task is not None:
                task.cancel()
        if self._owns_bus:
            dbus.close(self._bus)

    def set_rules(self, rules: NetworkRules) -> None:
        """Take new rules (a new fleet policy): judge the connections already read again."""
        if rules == self._rules:
            return
        self._rules = rules
        if self.view.known or self.view.reason == NO_RULES:
            self._publish(self._view(self.connections, self.view.metered))

    async def refresh(self) -> NetworkView:
        """Read every active connection again, publish the view if it changed and return it."""
        self.connections, view = await self._read_view()
        self._publish(view)
        return view

    def _publish(self, view: NetworkView) -> None:
        """Keep the view and call on_change if it differs from the last one."""
        if view == self.view:
            return
        self.view = view
        log.info("network: %s", view.reason)
        if self._on_change is not None:
            try:
                self._on_change(view)
            except Exception:
                log.exception("network change callback failed")

    async def _follow_bus(self) -> None:
        """Make the network unknown if the system bus connection is lost (the daemon may reopen)."""
        await dbus.wait_closed(self._bus)
        self.connections = []
        self._publish(NetworkView(known=False, reason=f"NetworkManager not available: {LOST_BUS}"))

    async def _read_view(self) -> tuple[list[ActiveConnection], NetworkView]:
        """Return the active connections and the view they give; unknown if NetworkManager fails."""
        try:
            connections, metered = await self._read()
        except dbus.BusError as exc:
            gone = exc.name.endswith((".ServiceUnknown", ".NameHasNoOwner"))
            detail = f"{NM} is not on the system bus" if gone else exc.message
            if not self._bus.connected:
                detail = LOST_BUS
            log.warning("cannot read NetworkManager: %s", detail)
            return [], NetworkView(known=False, reason=f"NetworkManager not available: {detail}")
        return connections, self._view(connections, metered)

    async def _subscribe(self, **match: str) -> None:
        self._subscriptions.append(await dbus.subscribe(self._bus, self._on_signal, timeout=self._timeout, **match))

    def _on_signal(self, signal: dbus.Signal) -> None:
        """Schedule one re-read for a relevant signal; signals during a read cause one more read."""
        if signal.member == "PropertiesChanged" and not _relevant_change(signal.args):
            return
        self._refresh_wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_while_wanted())

    async def _refresh_while_wanted(self) -> None:
        while self._refresh_wanted:
            self._refresh_wanted = False
            await self.refresh()

    def _view(self, connections: list[ActiveConnection], metered: bool) -> NetworkView:
        """Return the view for freshly read connections; since is when the corporate link came up.
        With no rule at all, the network says nothing: the server answering is the corporate link."""
        if not has_rules(self._rules):
            return NetworkView(known=False, metered=metered, reason=NO_RULES)
        on, via = matches(self._rules, connections)
        active = [c.id for c in connections if c.state == ACTIVATED]
        if on:
            previous = self.view
            since = previous.since if previous.on_corporate and previous.since is not None else self._clock()
            reason = f"on the corporate network via {via}"
        else:
            since = None
            listing = ", ".join(active) if active else "none"
            reason = f"no active connection matches the [network] rules (active: {listing})"
        return NetworkView(on_corporate=on, via=via, metered=metered, known=True, since=since, reason=reason)

    async def _read(self) -> tuple[list[ActiveConnection], bool]:
        """Return every active connection and whether the manager says metered; raise BusError."""
        manager = await dbus.get_all(self._bus, NM, NM_PATH, NM, timeout=self._timeout)
        paths = list(manager.get("ActiveConnections", []))
        primary = manager.get("PrimaryConnection", "/")
        paths.sort(key=lambda path: path != primary)
        read = await asyncio.gather(*(self._read_connection(path) for path in paths))
        return [c for c in read if c is not None], manager.get("Metered", 0) in METERED_YES

    async def _read_connection(self, path: str) -> ActiveConnection | None:
        """Return one active connection with its IP4, DHCP4 and Wi-Fi details, or None if it vanished."""
        props = await self._get_all(path, ACTIVE)
        if props is None:
            return None
        ip4, dhcp4, ssid = await asyncio.gather(
            self._get_all(props.get("Ip4Config", "/"), IP4),
            self._get_all(props.get("Dhcp4Config", "/"), DHCP4),
            self._ssid(props),
        )
        ip4, options = ip4 or {}, (dhcp4 or {}).get("Options", {})
        return ActiveConnection(
            id=props.get("Id", ""), uuid=props.get("Uuid", ""), type=props.get("Type", ""),
            state=props.get("State", 0), vpn=bool(props.get("Vpn", False)),
            default=bool(props.get("Default", False)),
            domains=tuple(ip4.get("Domains", ())), searches=tuple(ip4.get("Searches", ())),
            dhcp_domain_name=str(options.get("domain_name", "")),
            dhcp_domain_search=_option_text(options.get("domain_search", "")), ssid=ssid)

    async def _ssid(self, props: Mapping[str, Any]) -> bytes | None:
        """Return the SSID of a Wi-Fi connection from its device's active access point."""
        if props.get("Type") != WIFI:
            return None
        access_points = []
        for device in props.get("Devices", []):
            access_points.append(await self._get(device, WIRELESS, "ActiveAccessPoint"))
        specific = props.get("SpecificObject", "/")
        if "/AccessPoint/" in specific:
            access_points.append(specific)
        for access_point in access_points:
            ssid = await self._get(access_point, ACCESS_POINT, "Ssid")
            if ssid is not None:
                return bytes(ssid)
        return None

    async def _get_all(self, path: str, interface: str) -> dict[str, Any] | None:
        """Return an object's properties, or None for "/" or an object that vanished meanwhile."""
        if not path or path == "/":
            return None
        try:
            return await dbus.get_all(self._bus, NM, path, interface, timeout=self._timeout)
        except dbus.BusError as exc:
            log.debug("skipping %s: %s", path, exc.message)
            return None

    async def _get(self, path: str | None, interface: str, name: str) -> Any:
        if not path or path == "/":
            return None
        try:
            return await dbus.get(self._bus, NM, path, interface, name, timeout=self._timeout)
        except dbus.BusError as exc:
            log.debug("skipping %s: %s", path, exc.message)
            return None


def _relevant_change(args: Sequence[Any]) -> bool:
    """Given PropertiesChanged arguments, return True if they can change the answer."""
    if len(args) < 3 or args[0] not in _RELEVANT:
        return False
    keys = _RELEVANT[args[0]]
    return keys is None or bool(keys & (set(args[1]) | set(args[2])))


def _option_text(value: Any) -> str:
    """Return a DHCP option as text (NetworkManager sends strings; be lenient with lists)."""
    return " ".join(value) if isinstance(value, (list, tuple)) else str(value)


async def open_network_monitor(rules: NetworkRules, on_change: OnChange | None = None, *,
                               bus: dbus.Bus | None = None, clock: Callable[[], float] = time.time,
                               timeout: float = dbus.DEFAULT_TIMEOUT) -> NetworkMonitor:
    """Return a started monitor: NetworkManager's if it is on the system bus, else a NullMonitor
    saying why. Never raises."""
    return await dbus.open_service_monitor(
        NM, bus, lambda b, owns: NetworkManagerMonitor(b, rules, on_change, clock=clock, owns_bus=owns,
                                                       timeout=timeout),
        _null, timeout=timeout)


def _null(reason: str) -> NullMonitor:
    log.warning("NetworkManager not available: %s; relying on whether the server is reachable", reason)
    return NullMonitor(reason)
