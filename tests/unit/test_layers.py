"""The arrows between layers point down: the client never imports the server, the index
and the reports never import actions, the RPC handlers and serve's services never
import admin actions (what both need lives below both)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    """Return the modules a file imports, as dotted names (`from a import b` gives a.b too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offenders(files, forbidden: str) -> dict[str, list[str]]:
    bad = {}
    for path in files:
        names = sorted(n for n in _imports(path) if n == forbidden or n.startswith(forbidden + "."))
        if names:
            bad[str(path.relative_to(ROOT))] = names
    return bad


def test_the_client_never_imports_the_server():
    assert _offenders((ROOT / "homesync").rglob("*.py"), "homesync_server") == {}


def test_services_below_the_actions_import_no_action():
    server = ROOT / "homesync_server"
    below = [p for p in server.glob("*.py") if not p.name.startswith("cli") and p.name != "__main__.py"]
    below += list((server / "reports").rglob("*.py")) + list((server / "identity").rglob("*.py"))
    assert _offenders(below, "homesync_server.actions") == {}


def test_the_index_imports_no_report():
    assert _offenders([ROOT / "homesync_server/index.py"], "homesync_server.reports") == {}


def test_only_the_index_engines_name_a_database():
    engines = {"homesync_server/index.py", "homesync_server/index_postgres.py"}
    files = [p for p in ROOT.glob("homesync*/**/*.py") if str(p.relative_to(ROOT)) not in engines]
    for driver in ("sqlite3", "psycopg", "psycopg_pool"):
        assert _offenders(files, driver) == {}, f"only the index engines import {driver}"
