"""`homesync-server index migrate --to postgresql://…`: a populated SQLite index moves
whole (counts equal, the audit chain verifies, ids go on where they stopped)."""

from __future__ import annotations

import json

import pytest

from homesync.errors import ConflictError
from homesync_server import cli, index_store
from homesync_server.actions import setup
from homesync_server.config import Layout
from homesync_server.index import event

from .helpers import MACHINE, OTHER, archive, enrolled
from .test_operations import _drill


@pytest.fixture
def layout(tmp_path) -> Layout:
    layout = Layout(tmp_path / "data")
    setup.init(layout, "127.0.0.1:1")  # nothing listens there: migrate does not think a server runs
    return layout


def _populate(index) -> None:
    enrolled(index)
    enrolled(index, OTHER, "Desk", "ann")
    for n in range(5):
        index.add_archive(MACHINE, archive(f"a{n}", 10.0 * n + 10), event("backup", "joe", MACHINE))
    index.add_drill(_drill(MACHINE, 5.0), event("drill", "server", MACHINE))
    index.add_hold(MACHINE, "a1", "admin", "court", event("hold_add", "admin", MACHINE))
    index.add_grant({"public_key": "k", "repository_id": MACHINE, "user": "joe", "template": 0, "granted": 1.0,
                     "expires": 9e9, "idle": 9e9})
    index.add_policy_version("site", "", {"site": {}}, [], "admin", event("policy", "admin"))
    index.set_group_member("staff", "joe", True, event("group_add", "admin"))
    index.replace_machine_key(OTHER, "ssh-ed25519 NEW", "new", event("adopt", "ann", OTHER))
    index.note_session(MACHINE, 1.0, 2.0)


def test_a_populated_index_moves_whole_and_its_chain_verifies(layout, postgres_url, capsys):
    source = index_store.open_index(layout)
    _populate(source)
    fleet, sequence = source.fleet(), source.audit_sequence()
    source.close()
    assert cli.main(["index", "migrate", "--to", postgres_url, "--data", str(layout.data), "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved["counts_equal"] and moved["audit"]["intact"]
    assert moved["tables"]["archives"] == 5 and moved["tables"]["audit"] == sequence
    config = layout.config_file.read_text()
    layout.config_file.write_text(config + f'\n[index]\nurl = "{postgres_url}"\n')
    assert cli.main(["audit", "verify", "--data", str(layout.data)]) == 0
    target = index_store.open_index(layout)
    try:
        assert target.engine == "postgresql" and target.fleet() == fleet
        target.add_drill(_drill(MACHINE, 50.0), event("drill", "server", MACHINE))  # ids go on
        target.audit("after", "admin")
        assert [d["started"] for d in target.drills(MACHINE)] == [50.0, 5.0]
        assert target.audit_sequence() == sequence + 2
    finally:
        target.close()


def test_migrating_into_a_database_that_holds_an_index_is_refused(layout, postgres_url):
    source = index_store.open_index(layout)
    _populate(source)
    source.close()
    from homesync_server.actions import index_migration

    index_migration.migrate(layout, postgres_url)
    with pytest.raises(ConflictError):
        index_migration.migrate(layout, postgres_url)
