"""The one place homesync talks D-Bus (through dbus-fast): connect to a bus, read
properties, call methods and subscribe to signals, each with a timeout. Everything
else in the agent goes through these few functions and never imports dbus_fast.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant, unpack_variants
from dbus_fast.aio import MessageBus

from homesync.errors import HomesyncError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
_BUS_TYPES = {"system": BusType.SYSTEM, "session": BusType.SESSION}
_DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
PROPERTIES = "org.freedesktop.DBus.Properties"

Bus = MessageBus


class BusError(HomesyncError):
    """A bus could not be reached, or a call on it failed or timed out."""

    kind = "dbus"

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Signal:
    """A received signal, its arguments with variants unpacked."""

    sender: str
    path: str
    interface: str
    member: str
    args: list[Any]


async def connect(which: str = "system", *, timeout: float = DEFAULT_TIMEOUT) -> Bus:
    """Given "system" or "session", return a connected bus; raise BusError if unreachable.

    The address comes from DBUS_SYSTEM_BUS_ADDRESS / DBUS_SESSION_BUS_ADDRESS as usual.
    """
    bus = None
    try:
        bus = MessageBus(bus_type=_BUS_TYPES[which])
        return await asyncio.wait_for(bus.connect(), timeout)
    except Exception as exc:
        if bus is not None:
            close(bus)
        reason = "timed out" if isinstance(exc, TimeoutError) else _describe(exc)
        raise BusError(f"cannot connect to the {which} bus: {reason}") from exc


def close(bus: Bus) -> None:
    """Disconnect from the bus; never raises."""
    try:
        bus.disconnect()
    except Exception:
        log.debug("error while disconnecting from the bus", exc_info=True)


async def call(
    bus: Bus,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Any]:
    """Call a method and return its reply's arguments (variants kept); raise BusError."""
    what = f"{interface}.{member} on {destination} {path}"
    message = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
    try:
        reply = await asyncio.wait_for(bus.call(message), timeout)
    except TimeoutError as exc:
        raise BusError(f"{what}: no answer within {timeout:g} s") from exc
    except Exception as exc:
        raise BusError(f"{what}: {_describe(exc)}") from exc
    if reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body else ""
        raise BusError(f"{what}: {reply.error_name}: {detail}", name=reply.error_name or "")
    return list(reply.body)


async def get_all(bus: Bus, destination: str, path: str, interface: str, *,
                  timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Return all properties of an interface on an object, variants unpacked."""
    body = await call(bus, destination, path, PROPERTIES, "GetAll", "s", [interface], timeout=timeout)
    return unpack_variants(body[0])


async def get(bus: Bus, destination: str, path: str, interface: str, name: str, *,
              timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Return one property, its variant unpacked."""
    body = await call(bus, destination, path, PROPERTIES, "Get", "ss", [interface, name], timeout=timeout)
    return unpack_variants(body[0])


async def name_has_owner(bus: Bus, name: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Return True if some connection owns the well-known bus name."""
    body = await call(bus, *_DBUS, "NameHasOwner", "s", [name], timeout=timeout)
    return bool(body[0])


async def open_service_monitor(name: str, bus: Bus | None, make: Callable[[Bus, bool], Any],
                               null: Callable[[str], Any], *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Return a started monitor of the service `name` on the system bus (make(bus,
    owns_bus) builds it), or null(reason) when there is no bus, no such service, or it
    fails to start. Never raises."""
    owns_bus = bus is None
    try:
        if bus is None:
            bus = await connect("system", timeout=timeout)
    except BusError as exc:
        return null(f"no system bus ({exc.message})")
    monitor = make(bus, owns_bus)
    try:
        if not await name_has_owner(bus, name, timeout=timeout):
            raise BusError(f"{name} is not on the system bus")
        await monitor.start()
        return monitor
    except Exception as exc:
        await monitor.close()
        return null(exc.message if isinstance(exc, BusError) else repr(exc))


async def wait_closed(bus: Bus) -> None:
    """Return once the connection to the bus is closed or lost."""
    try:
        await bus.wait_for_disconnect()
    except Exception as exc:
        log.info("bus connection lost: %s", _describe(exc))


def variant(signature: str, value: Any) -> Variant:
    """Return a D-Bus variant, for a{sv} arguments such as notification hints."""
    return Variant(signature, value)


class Subscription:
    """A signal match on a bus; cancel() removes it."""

    def __init__(self, bus: Bus, rule: str, on_message: Callable[[Message], None]) -> None:
        self._bus = bus
        self.rule = rule
        self._on_message = on_message

    async def cancel(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop delivering signals and remove the match rule; never raises."""
        self._bus.remove_message_handler(self._on_message)
        if self._bus.connected:
            try:
                await call(self._bus, *_DBUS, "RemoveMatch", "s", [self.rule], timeout=timeout)
            except BusError:
                log.debug("could not remove match rule %s", self.rule, exc_info=True)


async def subscribe(
    bus: Bus,
    handler: Callable[[Signal], None],
    *,
    sender: str | None = None,
    interface: str | None = None,
    member: str | None = None,
    path: str | None = None,
    path_namespace: str | None = None,
    arg0: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Subscription:
    """Ask the bus for matching signals and call handler(Signal) for each; raise BusError.

    The sender is matched by the bus daemon (which resolves well-known names); the rest
    is matched here too, because one connection receives the signals of all its rules.
    """
    fields = {"sender": sender, "interface": interface, "member": member, "path": path,
              "path_namespace": path_namespace, "arg0": arg0}
    rule = ",".join(["type='signal'"] + [f"{key}='{value}'" for key, value in fields.items() if value])

    def on_message(message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return None
        if not _matches(message, interface, member, path, path_namespace, arg0):
            return None
        signal = Signal(message.sender or "", message.path or "", message.interface or "",
                        message.member or "", unpack_variants(list(message.body)))
        try:
            handler(signal)
        except Exception:
            log.exception("signal handler failed for %s.%s", signal.interface, signal.member)
        return None

    bus.add_message_handler(on_message)
    try:
        await call(bus, *_DBUS, "AddMatch", "s", [rule], timeout=timeout)
    except BusError:
        bus.remove_message_handler(on_message)
        raise
    return Subscription(bus, rule, on_message)


def _matches(message: Message, interface: str | None, member: str | None, path: str | None,
             path_namespace: str | None, arg0: str | None) -> bool:
    """Return True if a signal message fits the match fields that are set."""
    if interface and message.interface != interface:
        return False
    if member and message.member != member:
        return False
    if path and message.path != path:
        return False
    if path_namespace and not (message.path == path_namespace
                               or (message.path or "").startswith(path_namespace.rstrip("/") + "/")):
        return False
    if arg0 and not (message.body and message.body[0] == arg0):
        return False
    return True


def _describe(exc: BaseException) -> str:
    """Return a short description of an exception for a one-line message."""
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"
