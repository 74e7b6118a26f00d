"""Fixtures of the agent's integration tests: the private D-Bus and its fake services."""

from tests.support.fakebus import (  # noqa: F401  (pytest finds fixtures by name here)
    bus_services,
    fake_nm,
    fake_notifications,
    fake_upower,
    no_system_bus,
    session_bus,
    system_bus,
)
