"""Machine lifecycle end to end: rename (the rules of enrollment), transfer to another
user, retire (its key refused from then on, its backups still restorable by its
owner); the metadata file follows, each change is audited with the admin as actor."""

from __future__ import annotations

import json

from tests.support.repositories import enrolled_with_backups, metadata


def test_rename_transfer_retire(homesync_server, computer_factory):
    server = homesync_server
    machine_id, laptop, _ = enrolled_with_backups(server, computer_factory, "joe", "Joe's Old Name", 51)
    other = computer_factory()
    assert other.enroll(server, "joe", "Joe's Other").returncode == 0

    taken = server.cli("machine", "rename", "--machine", machine_id, "--name", "JOE'S OTHER")
    assert taken.returncode == 4 and "already has a computer named" in taken.stderr
    assert server.cli("machine", "rename", "--machine", machine_id, "--name", "bad\nname").returncode == 2
    renamed = server.cli_json("machine", "rename", "--machine", machine_id, "--name", "  Joe's New Name ")
    assert renamed["name"] == "Joe's New Name" and metadata(server, machine_id)["name"] == "Joe's New Name"

    assert server.cli("machine", "transfer", "--machine", machine_id, "--to", "nobody-known").returncode == 10
    moved = server.cli_json("machine", "transfer", "--machine", machine_id, "--to", "ann")
    assert moved["owner"] == "ann" and metadata(server, machine_id)["owner"] == "ann"
    theirs = other.json("machines", "--password-stdin", input="joe-secret-pw\n")
    assert "Joe's New Name" not in {m["name"] for m in theirs}
    assert laptop.json("backup")["indexed"] is True  # the machine itself carries on, now ann's

    retired = server.cli_json("machine", "retire", "--machine", machine_id)
    assert retired["state"] == "retired" and metadata(server, machine_id)["state"] == "retired"
    refused = laptop.run("backup")
    assert refused.returncode != 0 and "refused this computer's key" in refused.stderr
    assert server.cli("machine", "retire", "--machine", machine_id).returncode == 4
    new = computer_factory()
    restored = new.json("restore", "--machine", "Joe's New Name", *new.remote_args(server, "ann"),
                        input="ann-secret-pw\n")
    assert restored["machine_id"] == machine_id

    events = server.index_rows(f"SELECT action, actor, detail FROM audit WHERE machine_id = '{machine_id}' "
                               "AND action LIKE 'machine_%' ORDER BY id")
    assert [(a, actor) for a, actor, _ in events] == [
        ("machine_rename", "admin:nobody"), ("machine_transfer", "admin:nobody"), ("machine_retire", "admin:nobody")]
    assert json.loads(events[1][2]) == {"old_owner": "joe", "new_owner": "ann"}
