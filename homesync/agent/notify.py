"""Desktop notifications about protection: "at risk" once when the last backup gets older
than the recovery-point target, and a quiet "protected again" once after it recovers.
The decision is pure; showing goes through org.freedesktop.Notifications on the session bus.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

from homesync.agent import dbus

log = logging.getLogger(__name__)

APP_NAME = "homesync"
NOTIFICATIONS = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
LOW, NORMAL = 0, 1


@dataclass(frozen=True)
class Protection:
    """What the notice decision looks at; warned must be persisted so a restart does not repeat it.

    reference is when protection started being measured (enrolment), used before a first success.
    """

    last_success: float | None
    target: float
    warned: bool = False
    reference: float | None = None


@dataclass(frozen=True)
class Notice:
    """One desktop notification to show; kind is "at_risk" or "protected"."""

    kind: str
    summary: str
    body: str
    urgency: int


@dataclass(frozen=True)
class NoticeDecision:
    """What to show now (if anything), the warned flag to keep, and when to decide again."""

    notice: Notice | None
    warned: bool
    check_at: float


def decide_notice(protection: Protection, now: float, *, hint: str = "") -> NoticeDecision:
    """Given protection state and the time, return the notice to show, if any.

    At most one "at risk" notice per episode (it ends only with a successful backup), and
    one "protected again" after it, whatever the number of failures or network changes.
    hint is appended to the at-risk text (e.g. why the agent cannot back up now).
    """
    since = protection.last_success if protection.last_success is not None else protection.reference
    risk_at = -math.inf if since is None else since + protection.target
    at_risk = now >= risk_at
    if at_risk and not protection.warned:
        return NoticeDecision(_at_risk(protection, now, since, hint), True, math.inf)
    if at_risk:
        return NoticeDecision(None, True, math.inf)
    if protection.warned:
        notice = Notice("protected", "Your files are backed up again", "homesync completed a backup.", LOW)
        return NoticeDecision(notice, False, risk_at)
    return NoticeDecision(None, False, risk_at)


def _at_risk(protection: Protection, now: float, since: float | None, hint: str) -> Notice:
    """Return the at-risk notice with the age of the last backup."""
    if protection.last_success is None:
        body = "This computer has not been backed up yet."
    else:
        body = f"The last backup is {age_text(now - protection.last_success)} old " \
               f"(the target is {age_text(protection.target)})."
    if hint:
        body += f" {hint[0].upper()}{hint[1:]}."
    return Notice("at_risk", "Your files are not backed up", body, NORMAL)


def age_text(seconds: float) -> str:
    """Given a duration, return it in words ("40 minutes", "5 hours", "3 days")."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"


class Notifier(Protocol):
    """What the agent needs to show a notice."""

    async def show(self, notice: Notice) -> None: ...

    async def close(self) -> None: ...


class NullNotifier:
    """For sessions without a notification service: notices only go to the log."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    async def show(self, notice: Notice) -> None:
        """Log the notice."""
        log.info("notice (no desktop notifications): %s: %s", notice.summary, notice.body)

    async def close(self) -> None:
        """Nothing to release."""


class DesktopNotifier:
    """Shows notices through org.freedesktop.Notifications; a new notice replaces the previous one."""

    def __init__(self, bus: dbus.Bus, *, owns_bus: bool = False, timeout: float = dbus.DEFAULT_TIMEOUT) -> None:
        self._bus, self._owns_bus, self._timeout = bus, owns_bus, timeout
        self._last_id = 0

    async def show(self, notice: Notice) -> None:
        """Send the notice; log and carry on if the service does not answer."""
        quiet = notice.urgency == LOW
        hints = {"urgency": dbus.variant("y", notice.urgency)}
        if quiet:
            hints["transient"] = dbus.variant("b", True)
        icon = "emblem-default" if quiet else "dialog-warning"
        args = [APP_NAME, self._last_id, icon, notice.summary, notice.body, [], hints, 5000 if quiet else -1]
        try:
            reply = await dbus.call(self._bus, NOTIFICATIONS, NOTIFICATIONS_PATH, NOTIFICATIONS, "Notify",
                                    "susssasa{sv}i", args, timeout=self._timeout)
            self._last_id = int(reply[0])
        except dbus.BusError as exc:
            log.warning("could not show a desktop notification: %s", exc.message)

    async def close(self) -> None:
        """Release the bus if this notifier opened it."""
        if self._owns_bus:
            dbus.close(self._bus)


async def open_notifier(*, bus: dbus.Bus | None = None, timeout: float = dbus.DEFAULT_TIMEOUT) -> Notifier:
    """Return a notifier on the session bus, or a NullNotifier if there is none. Never raises."""
    owns_bus = bus is None
    try:
        if bus is None:
            bus = await dbus.connect("session", timeout=timeout)
    except dbus.BusError as exc:
        log.info("desktop notifications unavailable: %s", exc.message)
        return NullNotifier(exc.message)
    return DesktopNotifier(bus, owns_bus=owns_bus, timeout=timeout)
