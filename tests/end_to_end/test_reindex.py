"""A lost index rebuilt from the repositories: after `reindex`, the machines, their
owners, names, states, archives and legal holds are back; users list their machines,
agents back up with their keys, and a restore onto new hardware is bit for bit."""

from __future__ import annotations

import json

from tests.end_to_end.test_backbone import NOT_BACKED_UP
from tests.support.repositories import enrolled_with_backups
from tests.support.trees import assert_same_tree, snapshot

FIGURES = ("id", "owner", "name", "hostname", "state", "archives", "last_size", "enrolled")


def test_a_lost_index_is_rebuilt_and_everything_works_as_before(fresh_server, computer_factory):
    server = fresh_server
    joe_id, joe, (joe_backup,) = enrolled_with_backups(server, computer_factory, "joe", "Joe's Reindexed", 41)
    ann_id, _, _ = enrolled_with_backups(server, computer_factory, "ann", "Ann's Retired", 42)
    assert server.cli("hold", "add", "--machine", joe_id, "--archive", joe_backup["name"]).returncode == 0
    assert server.cli("machine", "retire", "--machine", ann_id).returncode == 0
    before = {m["id"]: {k: m[k] for k in FIGURES} for m in server.cli_json("machines")}
    expected = snapshot(joe.home, exclude=NOT_BACKED_UP)

    serving = server.cli("reindex")
    assert serving.returncode == 4 and "the server is running" in serving.stderr
    assert server.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        (server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)
    rebuilt = server.cli_json("reindex")
    assert rebuilt["problems"] == [] and rebuilt["archives"] == 2
    assert {m["id"]: m["state"] for m in rebuilt["machines"]} == {joe_id: "active", ann_id: "retired"}
    after = {m["id"]: {k: m[k] for k in FIGURES} for m in server.cli_json("machines")}
    assert after == before
    assert [(h["machine_id"], h["archive"]) for h in server.cli_json("hold", "list")] == [(joe_id, joe_backup["name"])]
    (archive,) = server.index_rows(f"SELECT name, files, original_size FROM archives WHERE machine_id = '{joe_id}'")
    assert archive == (joe_backup["name"], joe_backup["files"], joe_backup["original_size"])
    events = server.index_rows("SELECT action, detail FROM audit ORDER BY id")
    assert events[-1][0] == "reindex" and json.loads(events[-1][1])["machines"] == 2
    assert sum(1 for a, d in events if a == "passphrase_release" and json.loads(d) == {"to": "reindex"}) == 2
    again = server.cli("reindex")
    assert again.returncode == 4 and "still lists 2 machines" in again.stderr

    server.start()
    mine = joe.json("machines", "--password-stdin", input="joe-secret-pw\n")
    assert [(m["id"], m["name"], m["archives"]) for m in mine] == [(joe_id, "Joe's Reindexed", 1)]
    assert joe.json("backup")["indexed"] is True  # the machine key is known again
    new = computer_factory()
    restored = new.json("restore", "--machine", "Joe's Reindexed", "--archive", joe_backup["name"],
                        *new.remote_args(server, "joe"), input="joe-secret-pw\n")
    assert restored["archive"] == joe_backup["name"]
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
