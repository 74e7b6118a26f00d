"""The backbone end to end: a real server on loopback, real borg through the shim, the
real CLI run as an unprivileged user. Enroll, back up, change, back up, lose the
laptop, restore onto a computer that was never enrolled: bit for bit."""

from __future__ import annotations


from tests.support.processes import chown_tree
from tests.support.trees import assert_same_tree, make_home, mutate_home, snapshot

# What is never in a backup: homesync's own files and what the default exclusions drop.
NOT_BACKED_UP = (".config/homesync", ".local/share/homesync", ".local/state/homesync", ".cache",
                 ".local/share/Trash")
MACHINE = "Joe's \"Thinkpad\""


def test_backup_change_backup_then_restore_on_new_hardware(homesync_server, computer_factory):
    laptop = computer_factory()
    make_home(laptop.home, seed=7, files=400, total_bytes=8 << 20)
    first = laptop.enroll_and_back_up(homesync_server, "joe", MACHINE)
    mutate_home(laptop.home, seed=8)
    chown_tree(laptop.home)
    second = laptop.json("backup")
    assert first["result"] == second["result"] == "success"
    assert second["files"] > 300 and second["indexed"] is True
    # the second backup deduplicates against the first: it adds far less than it holds
    assert second["deduplicated_size"] < second["original_size"] / 4
    expected = snapshot(laptop.home, exclude=NOT_BACKED_UP)
    archives = laptop.json("archives")
    assert [a["name"] for a in archives] == [first["name"], second["name"]]

    laptop.throw_away()  # out of the window: its home and its homesync state

    new = computer_factory()
    restored = new.json("restore", "--machine", "joe's \"thinkpad\"", *new.remote_args(homesync_server, "joe"),
                        input="joe-secret-pw\n")
    assert restored["archive"] == second["name"] and restored["kept_aside"] == []
    assert_same_tree(expected, snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
    # the home directory itself: mode exact, mtime to the microsecond (what borg 1.4 lists for ".")
    root, restored_root = expected[b"."], snapshot(new.home, exclude=NOT_BACKED_UP)[b"."]
    assert root["mode"] == restored_root["mode"]
    assert abs(root["mtime_ns"] - restored_root["mtime_ns"]) < 1000

    with homesync_server.index() as index:
        events = [(e["action"], e["actor"]) for e in index.audit_events()]
    assert ("passphrase_release", "joe") in events and ("restore", "joe") in events
    assert ("enroll", "joe") in events


def test_machines_lists_only_the_users_own(homesync_server, computer_factory):
    joe, ann = computer_factory(), computer_factory()
    (joe.home / "a").write_text("a")
    chown_tree(joe.home)
    assert joe.enroll(homesync_server, "joe", "Joe's Workstation").returncode == 0
    assert ann.enroll(homesync_server, "ann", "Ann's Laptop").returncode == 0
    joe.ok("backup")
    mine = joe.json("machines", "--password-stdin", input="joe-secret-pw\n")
    assert "Joe's Workstation" in {m["name"] for m in mine}
    assert "Ann's Laptop" not in {m["name"] for m in mine}
    theirs = ann.json("machines", "--password-stdin", input="ann-secret-pw\n")
    assert {m["name"] for m in theirs} == {"Ann's Laptop"}


def test_restore_merges_into_a_non_empty_target_without_losing_local_files(homesync_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "Documents").mkdir()
    (laptop.home / "Documents/same.txt").write_text("same")
    (laptop.home / "Documents/changed.txt").write_text("from the backup")
    laptop.enroll_and_back_up(homesync_server, "joe", "Merge Test")

    target = laptop.home / "restore-here"
    (target / "Documents").mkdir(parents=True)
    (target / "Documents/same.txt").write_text("same")
    (target / "Documents/changed.txt").write_text("local edit, never lost")
    (target / "local-only.txt").write_text("mine")
    chown_tree(laptop.home)
    result = laptop.json("restore", "--machine", "Merge Test", "--target", str(target))

    assert (target / "Documents/changed.txt").read_text() == "from the backup"
    assert result["kept_aside"] == ["Documents/changed.txt"]
    kept = target / result["kept_dir"].rsplit("/", 1)[1] / "Documents/changed.txt"
    assert kept.read_text() == "local edit, never lost"
    assert (target / "local-only.txt").read_text() == "mine"
    assert result["skipped_identical"] >= 1
