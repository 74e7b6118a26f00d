"""Fixtures of the agent's end-to-end tests: the real agent process as the unprivileged
user, the real server, fake NetworkManager, UPower and notifications on private buses."""

from __future__ import annotations

import pytest

from tests.end_to_end.agent.harness import Laptop, enrolled_laptop, stop_and_clean
from tests.support.fakebus import (  # noqa: F401  (pytest finds fixtures by name here)
    bus_services,
    fake_nm,
    fake_notifications,
    fake_upower,
    session_bus,
    system_bus,
)
from tests.support.homesync_client import computer_factory  # noqa: F401
from tests.support.homesync_server import fresh_server  # noqa: F401
from tests.support.processes import chown_tree


@pytest.fixture
def laptop_server(fresh_server):  # noqa: F811
    """The server the laptop enrolls with: the test's own, unless its module shares one."""
    return fresh_server


@pytest.fixture
def laptop(laptop_server, computer_factory, system_bus, session_bus) -> Laptop:  # noqa: F811
    """An enrolled computer with a small home, configured for fast agent timings; its
    agent is started by the test and stopped (SIGTERM, then SIGKILL) afterwards."""
    computer = computer_factory()
    (computer.home / "Documents").mkdir()
    (computer.home / "Documents/report.txt").write_text("quarterly numbers\n")
    chown_tree(computer.home)
    laptop = enrolled_laptop(laptop_server, computer, {"DBUS_SYSTEM_BUS_ADDRESS": system_bus.address,
                                                      "DBUS_SESSION_BUS_ADDRESS": session_bus.address})
    yield laptop
    print(f"--- agent log ---\n{stop_and_clean(laptop)[-6000:]}")
