"""The exit-code tables: one per executable, each code one meaning, every error's code in
the table of each executable that can raise it, and docs/architecture.md showing both."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import homesync
import homesync_server
from homesync import exits
from homesync.errors import HomesyncError

ROOT = Path(__file__).resolve().parents[3]


def _error_classes() -> list[type[HomesyncError]]:
    for package in (homesync, homesync_server):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found, todo = [], [HomesyncError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _raised_in(package) -> set[str]:
    """Names of the classes constructed anywhere in a package's sources."""
    names = set()
    for path in Path(package.__path__[0]).rglob("*.py"):
        names.update(re.findall(r"(?<!class )\b([A-Z]\w*(?:Error|NotRunning|Cancelled))\(", path.read_text()))
    return names


def _documented(executable: str) -> dict[int, str]:
    text = (ROOT / "docs/architecture.md").read_text()
    section = text.split(f"### `{executable}`\n", 1)[1].split("\n\n", 1)[0]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.*) \|$", section, re.M)}


def test_every_error_code_has_one_meaning():
    for cls in _error_classes():
        assert cls.exit_code in exits.MEANINGS, f"{cls.__name__} exits {cls.exit_code}, which no table has"


def test_each_executable_table_holds_what_its_package_raises():
    classes = {cls.__name__: cls for cls in _error_classes()}
    # the client also meets every error the server's sessions send over the wire
    client = _raised_in(homesync) | _raised_in(homesync_server)
    for executable, raised in (("homesync", client), ("homesync-server", _raised_in(homesync_server))):
        for name in raised & classes.keys():
            if executable in classes[name].shown_by:
                code = classes[name].exit_code
                assert code in exits.TABLES[executable], f"{executable} can show {name} (exit {code}), not in its table"


def test_an_error_is_shown_by_one_executable_or_both():
    for cls in _error_classes():
        assert set(cls.shown_by) <= set(exits.TABLES) and cls.shown_by, cls.__name__


def test_outcomes_are_not_errors_codes():
    error_codes = {cls.exit_code for cls in _error_classes()} - {exits.AGENT_NOT_RUNNING}
    assert not {exits.REPORT_CRITICAL, exits.AUDIT_BROKEN, exits.INTERNAL} & error_codes
    assert exits.REPORT_CRITICAL not in exits.HOMESYNC and exits.AGENT_NOT_RUNNING not in exits.HOMESYNC_SERVER


def test_the_architecture_page_shows_both_tables_as_they_are():
    for executable, table in exits.TABLES.items():
        assert _documented(executable) == table, f"docs/architecture.md's {executable} table differs from exits.py"
