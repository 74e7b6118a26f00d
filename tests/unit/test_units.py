"""The shipped systemd units, read as files (the packaging test verifies them with
systemd-analyze in a Debian root): each runs the packaged command, documents itself
with a file a package installs, every timer has its service, and the agent's user unit
asks for nothing a user manager without user namespaces would refuse to start."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
UNITS = sorted((REPO / "systemd").iterdir())
# Where build-deb.sh puts each document, from where it is in the checkout.
INSTALLED_DOCS = {"/usr/share/doc/homesync/user-guide.md": "docs/user-guide.md",
                  "/usr/share/doc/homesync-server/admin-guide.md": "docs/admin-guide.md"}
# Settings a user manager cannot do without when it has no user namespace: with any of
# them, systemd fails the unit (226/NAMESPACE) instead of leaving the sandbox out.
INSISTS_ON_NAMESPACES = ("PrivateUsers", "RootDirectory", "RootImage", "BindPaths", "BindReadOnlyPaths",
                         "TemporaryFileSystem", "DynamicUser", "MountImages", "LogNamespace")


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_each_unit_documents_itself_with_an_installed_file(unit):
    docs = _read(unit)["Unit"]["Documentation"].split()
    for doc in docs:
        assert doc.startswith("file://") and doc[len("file://"):] in INSTALLED_DOCS, doc
        assert (REPO / INSTALLED_DOCS[doc[len("file://"):]]).is_file()


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda p: p.name)
def test_each_service_runs_the_packaged_command(unit):
    command = _read(unit)["Service"]["ExecStart"].split()[0]
    assert command in ("/usr/bin/homesync", "/usr/bin/homesync-server"), command


def test_every_timer_has_its_service_and_the_build_ships_them_all():
    timers = [u for u in UNITS if u.suffix == ".timer"]
    assert {t.stem for t in timers} == {"homesync-drill", "homesync-prune", "homesync-report"}
    build = (REPO / "packaging/build-deb.sh").read_text()
    for unit in UNITS:
        assert unit.name in build, f"{unit.name} is not packaged"
    for timer in timers:
        assert (REPO / "systemd" / f"{timer.stem}.service").is_file()


def test_the_agent_unit_starts_where_user_namespaces_are_not_available():
    service = _read(REPO / "systemd/homesync-agent.service")["Service"]
    assert [key for key in INSISTS_ON_NAMESPACES if key in service] == []
    assert service["NoNewPrivileges"] == "yes" and "SystemCallFilter" in service  # what applies regardless


def test_the_shipped_agent_toml_is_only_comments():
    """The conffile sets nothing: a computer names its server only where an image or an
    admin writes it in."""
    import tomllib

    assert tomllib.loads((REPO / "packaging/agent.toml").read_text()) == {}


def test_the_shipped_agent_toml_names_no_site(tmp_path, monkeypatch):
    """Installed as it ships, the file is no site configuration (not a broken one)."""
    from homesync import site

    (tmp_path / "agent.toml").write_text((REPO / "packaging/agent.toml").read_text())
    monkeypatch.setenv("HOMESYNC_SYSTEM_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "none"))
    assert site.load() is None


def test_the_server_unit_lets_a_node_drain_before_systemd_kills_it():
    """SIGTERM drains for up to [node] drain_seconds, then closes what runs and writes
    `stopped`: systemd's SIGKILL must come later, or a node stopped mid-drain leaves its
    borg locks and counts as dead instead of stopped."""
    from homesync_server.config import NodeConfig
    service = _read(REPO / "systemd/homesync-server.service")["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) >= NodeConfig().drain_seconds + 20
