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


def test_reindex_keeps_telling_the_old_computer_of_an_adopted_machine_by_whom_and_when(fresh_server,
                                                                                      computer_factory):
    """The keys an adopt replaced survive a reindex: from the repository's metadata file
    (lost index) and, for an adopt the file does not record, from the index that
    `reindex --force` sets aside (the file then records it too)."""
    from tests.support.homesync_server import PASSWORDS
    from tests.support.repositories import metadata, repo_path
    server = fresh_server
    old = computer_factory()
    (old.home / "a.txt").write_text("a")
    old.enroll_and_back_up(server, "joe", "Joe's Adopted")
    machine_id = old.machine_id()
    new = computer_factory()
    new.json("restore", "--machine", "Joe's Adopted", "--adopt", *new.remote_args(server, "joe"),
             input=PASSWORDS["joe"] + "\n")
    (hostname,) = server.index_rows("SELECT hostname FROM machines")[0]
    (replaced_at,) = server.index_rows("SELECT replaced_at FROM replaced_keys")[0]

    assert server.stop() == 0
    # as after an adopt made before the metadata file kept replaced keys
    meta = metadata(server, machine_id)
    assert [k["hostname"] for k in meta.pop("replaced_keys")] == [hostname]
    (repo_path(server, machine_id) / "homesync-machine.json").write_text(json.dumps(meta))
    forced = server.cli_json("reindex", "--force")
    assert forced["problems"] == [] and forced["set_aside"]
    assert server.index_rows("SELECT machine_id, replaced_at, hostname FROM replaced_keys") == [
        (machine_id, replaced_at, hostname)]
    assert [k["hostname"] for k in metadata(server, machine_id)["replaced_keys"]] == [hostname]

    for suffix in ("", "-wal", "-shm"):
        (server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)
    assert server.cli_json("reindex")["problems"] == []
    assert server.index_rows("SELECT machine_id, replaced_at, hostname FROM replaced_keys") == [
        (machine_id, replaced_at, hostname)]
    server.start()
    done = old.run("backup")
    assert done.returncode == 18, done.stderr
    assert f"replaced by the computer {hostname!r}" in done.stderr, done.stderr
    assert new.json("backup")["indexed"] is True  # the adopting computer's key is the machine's


def _policy_state(server) -> tuple:
    """Return what the server says of its policy: history, the layers of every version,
    the groups, and the effective policy of a user in a group."""
    history = [{k: v for k, v in h.items()} for h in server.cli_json("policy", "history")]
    layers = server.index_rows("SELECT version, at, actor, scope, target, layers, changed FROM policy_versions "
                               "ORDER BY version")
    return history, layers, server.cli_json("policy", "group", "list"), \
        server.cli_json("policy", "show", "--user", "joe")


def test_policy_versions_history_and_groups_survive_a_forced_reindex_and_a_lost_index(fresh_server,
                                                                                     computer_factory):
    """Policies and local groups are in no repository (issue 19): the server keeps every
    version and the groups in <data>/policy.json too (written atomically at each change),
    and reindex brings them back from the index it sets aside (--force, when SQLite can
    still read it) or from that file (a lost or damaged index)."""
    server = fresh_server
    joe_id, joe, _ = enrolled_with_backups(server, computer_factory, "joe", "Joe's Policied", 43)
    for text, layer in (('[network]\ncorporate_domains = ["corp.example.com"]\n', ()),
                        ('[agent]\nmax_age = "9h"\n', ("--group", "editors")),
                        ('[agent]\nmin_interval = "20m"\n', ("--machine", joe_id))):
        assert server.cli("policy", "set", "-", *layer, input=text).returncode == 0
    assert server.cli("policy", "group", "add", "editors", "joe").returncode == 0
    assert server.cli("policy", "group", "add", "staff", "ann").returncode == 0
    assert server.cli("policy", "group", "remove", "staff", "ann").returncode == 0
    assert server.cli("policy", "group", "add", "staff", "joe").returncode == 0
    before = _policy_state(server)
    assert [h["version"] for h in before[0]] == [1, 2, 3]
    assert before[3]["values"]["agent.max_age"] == "9h" and before[3]["sources"]["agent.max_age"] == "group editors"
    saved = json.loads((server.data / "policy.json").read_text())
    assert [v["version"] for v in saved["versions"]] == [1, 2, 3]
    assert (server.data / "policy.json").stat().st_mode & 0o777 == 0o600

    assert server.stop() == 0
    forced = server.cli_json("reindex", "--force")
    assert forced["problems"] == [] and forced["set_aside"]
    assert forced["policy"] == {"versions": 3, "group_members": 2, "from": "the index set aside"}
    assert _policy_state(server) == before

    for suffix in ("", "-wal", "-shm"):  # lost: only the file is left
        (server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)
    lost = server.cli_json("reindex")
    assert lost["policy"] == {"versions": 3, "group_members": 2, "from": "policy.json"}
    assert _policy_state(server) == before

    (server.data / "index.sqlite").write_bytes(b"not a database at all" * 100)  # damaged: SQLite cannot read it
    for suffix in ("-wal", "-shm"):
        (server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)
    damaged = server.cli_json("reindex", "--force")
    assert damaged["policy"]["from"] == "policy.json" and _policy_state(server) == before

    for suffix in ("", "-wal", "-shm"):  # lost behind the server's back: serve indexes what it lacks at start
        (server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)
    server.start()
    assert _policy_state(server) == before
    # the next change numbers on, and the machine-scope layer still names the machine
    assert server.cli("policy", "set", "-", input='[agent]\nmax_age = "7h"\n').returncode == 0
    assert [h["version"] for h in server.cli_json("policy", "history")] == [1, 2, 3, 4]
    assert server.cli_json("policy", "show", "--machine", joe_id)["sources"]["agent.min_interval"] == f"machine {joe_id}"
