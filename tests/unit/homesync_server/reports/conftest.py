"""A small real fleet for the report tests: a data directory made by `init`, local
users, and an index filled through the Index's own methods, at known ages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from homesync_server.actions import setup
from homesync_server.config import Layout
from homesync_server.identity.local import LocalIdentity
from homesync_server.index import event
from homesync_server.index_store import IndexStore, open_url

HOUR = 3600.0
# (id, owner, name, newest backup's age in hours or None, state, enrolled hours ago)
MACHINES = [
    ("a" * 16, "joe", "Joe's \"Thinkpad\" \\ ü", 1, "active", 900),
    ("b" * 16, "joe", "=HYPERLINK(\"http://x\")", 72, "active", 900),
    ("c" * 16, "ann", "Ann's <b>Laptop</b>", 240, "active", 900),
    ("d" * 16, "ann", "Ann's New Desk", None, "active", 400),
    ("e" * 16, "leaver", "Old Laptop", 2, "active", 900),
    ("f" * 16, "joe", "Joe's Old Desk", 3000, "retired", 9000),
]


def make_fleet(data: Path) -> Layout:
    """Create a data directory holding MACHINES; return its layout."""
    layout = Layout(data)
    setup.init(layout, "127.0.0.1:2222")
    people = LocalIdentity(layout.data / "users.json")
    people.add("joe", "pw-joe", display_name="Joe Bloggs")
    people.add("ann", "pw-ann")
    index = open_url(f"sqlite://{layout.index}")
    index.record_user("joe", "Joe B. (indexed)")
    index.record_user("ann", "Ann (indexed)")
    index.record_user("leaver", "Lee Ver")
    now = time.time()  # not at import: a long test run would age the fleet past its statuses
    for machine_id, owner, name, age, _, enrolled in MACHINES:
        _add(index, machine_id, owner, name, age, now - enrolled * HOUR, now)
    index.set_agent_state("b" * 16, "waiting", "not on the corporate network\x1b[31m", "0.1.0")
    index.audit("passphrase_release", "joe", "a" * 16, "10.0.0.9:4000", to="owner")
    index.audit("restore", "joe", "a" * 16, "10.0.0.9:4000", archive="a-1", hostname="new-host", files=12,
                bytes=3_000_000, seconds=4.2, result="success")
    index.audit("login_failed", "ann", source="10.0.0.8:4000", reason="wrong user name or password")
    _drill(index, "a" * 16, now - 30 * HOUR, [])
    _drill(index, "b" * 16, now - 20 * HOUR, [])
    _drill(index, "b" * 16, now - 10 * HOUR, [{"stage": "extract", "message": "2 files differ <\x1b[2J>"}])
    index.flag_mass_change({"machine_id": "c" * 16, "archive": "c-1", "share": 0.92, "baseline": 0.03,
                            "flagged_at": now - 5 * HOUR}, event("mass_change", "system", "c" * 16))
    _set_states(index)
    index.close()
    return layout


def _add(index: IndexStore, machine_id: str, owner: str, name: str, age: float | None, enrolled: float,
         now: float) -> None:
    machine = {"id": machine_id, "owner": owner, "name": name, "hostname": f"host-{machine_id[0]}",
               "public_key": "ssh-ed25519 AAAA", "enrolled": enrolled}
    index.add_machine(machine, name.lower(), event("enroll", owner, machine_id, name=name, hostname="h"))
    if age is None:
        return
    for n, end in enumerate((now - age * HOUR - 48 * HOUR, now - age * HOUR)):
        index.add_archive(machine_id, {"name": f"{machine_id[0]}-{n}", "start": end - 60, "end": end,
                                       "files": 10, "original_size": 1000 * (n + 1), "compressed_size": 500,
                                       "deduplicated_size": 300, "result": "success"}, event("backup", owner))
    index.add_archive(machine_id, {"name": f"{machine_id[0]}-failed", "start": now - 5, "end": now - 4,
                                   "files": 0, "original_size": 0, "compressed_size": 0, "deduplicated_size": 0,
                                   "result": "failed", "error": "borg failed"}, event("backup", owner))


def _drill(index: IndexStore, machine_id: str, finished: float, failures: list[dict]) -> None:
    result = "failed" if failures else "passed"
    index.add_drill({"machine_id": machine_id, "started": finished - 60, "finished": finished,
                     "archive": f"{machine_id[0]}-1", "result": result, "failures": failures, "files": 10,
                     "bytes": 2000, "check_seconds": 1.0, "extract_seconds": 2.0, "throughput": 1000.0,
                     "rpo_seconds": 3600.0, "hashed_files": 10}, event("drill", "admin", machine_id, result=result))


def _set_states(index: IndexStore) -> None:
    """Retire and replace machines as `machine retire` and an adopt do (change_machine)."""
    for m in MACHINES:
        if m[4] != "active":
            index.change_machine(m[0], {"state": m[4]}, event(f"machine_{m[4]}", "admin", m[0]))


@pytest.fixture
def fleet_layout(tmp_path) -> Layout:
    return make_fleet(tmp_path / "data")
