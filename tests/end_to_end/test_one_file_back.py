"""Getting one file back: `restore --path` at any depth, `find` by a fragment of the
name, `versions` of one file, and one version restored beside the current one, all
through the real server and real borg; bad input gives one line and writes nothing."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from homesync import catalog
from homesync.actions import history
from tests.support.homesync_client import catalog_lock, catalogs_kept
from tests.support.homesync_server import PASSWORDS
from tests.support.processes import chown_tree
from tests.support.trees import snapshot

OWN = (".cache", ".config", ".local")
DEEP = "Documents/projects/2026/q4/budget/drafts/old/report.odt"  # depth 8
ODD = os.fsdecode(b"Music/caf\xe9 [live]/track *1?.ogg")           # not UTF-8, glob characters
SAME = "Documents/same size.txt"  # its content alternates, always four bytes, a new mtime each time
NAMES = {"notes.txt": b"top level\n", "Photos/2026/beach/img[1].jpg": b"\xff\xd8 pretend jpeg " * 50,
         DEEP: b"version 1\n", ODD: b"odd bytes " * 10}


def _write(home, rel: str, data: bytes, mtime: int | None = None) -> None:
    path = os.path.join(os.fsencode(home), os.fsencode(rel))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _outside_own(home, without: bytes = b""):
    """Return home's entries outside homesync's own directories (and without the
    subtree `without`, and the mtime of the folder holding it, which a new entry
    changes; every other folder keeps its mtime)."""
    tree = snapshot(home, exclude=OWN)
    tree.pop(b".", None)
    for rel in [k for k in tree if without and (k == without or k.startswith(without + b"/"))]:
        del tree[rel]
    parent = os.path.dirname(without)
    if parent in tree:
        tree[parent].pop("mtime_ns")
    return tree


@pytest.fixture(scope="module")
def laptop(homesync_server, computer_factory_module):
    """joe's laptop, backed up five times with DEEP changed before each backup; yields
    (computer, the five contents of DEEP)."""
    computer = computer_factory_module()
    for rel, data in NAMES.items():
        _write(computer.home, rel, data, mtime=1_700_000_000)
    contents = []
    for n in range(1, 6):
        data = f"report, version {n}\n".encode() * n
        _write(computer.home, DEEP, data, mtime=1_700_000_000 + n * 3600)
        _write(computer.home, SAME, b"abab" if n % 2 else b"cdcd", mtime=1_700_000_000 + n * 60)
        contents.append(data)
        chown_tree(computer.home)
        if n == 1:
            assert computer.enroll(homesync_server, "joe", "Find laptop").returncode == 0
        assert computer.json("backup")["result"] == "success"
        time.sleep(1.1)  # archive names carry seconds
    return computer, contents


@pytest.mark.parametrize("rel", ["notes.txt", "Photos/2026/beach/img[1].jpg", DEEP, ODD, "Photos/2026"])
def test_restore_path_at_any_depth_comes_back_bit_for_bit(laptop, rel):
    computer, _ = laptop
    before = _outside_own(computer.home, without=os.fsencode(rel) + b".moved-away")
    victim = os.path.join(os.fsencode(computer.home), os.fsencode(rel))
    moved = victim + b".moved-away"
    parent = os.stat(os.path.dirname(victim))
    os.rename(victim, moved)
    try:
        done = computer.run("restore", "--machine", "Find laptop", "--path", rel, "--json")
        assert done.returncode == 0, done.stderr
        assert _outside_own(computer.home, without=os.fsencode(rel) + b".moved-away") == before
    finally:
        if os.path.lexists(moved):
            if os.path.isdir(victim) and not os.path.islink(victim):
                shutil.rmtree(victim)
            elif os.path.lexists(victim):
                os.unlink(victim)
            os.rename(moved, victim)
        # leave the folder as backed up, for the next test's restore of a folder above it
        os.utime(os.path.dirname(victim), ns=(parent.st_atime_ns, parent.st_mtime_ns))


def test_a_deep_file_is_found_its_five_versions_listed_and_the_third_restored_beside(laptop, homesync_server):
    computer, contents = laptop
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(1_700_000_000 + 3 * 3600))
    beside = DEEP.replace("report.odt", f"report ({stamp}).odt")
    before = _outside_own(computer.home, without=beside.encode())
    found = computer.json("find", "EPORT.o", "--machine", "Find laptop")  # a fragment, any case
    mine = [r for r in found if r["path"] == DEEP]
    assert len(mine) == 5 and all(r["machine"] == "Find laptop" for r in mine)
    assert [r["size"] for r in mine] == [len(c) for c in reversed(contents)]  # newest first
    assert all(len(r["archives"]) == 1 for r in mine)

    versions = computer.json("versions", DEEP)
    assert [v["number"] for v in versions] == [1, 2, 3, 4, 5]
    assert [v["size"] for v in versions] == [len(c) for c in contents]
    assert all(v["first_seen"] == v["last_seen"] for v in versions)
    third = versions[2]

    done = computer.run("restore", "--machine", "Find laptop", "--archive", third["restore_from"], "--path", DEEP,
                        "--beside", "--json")
    assert done.returncode == 0, done.stderr
    assert (computer.home / beside).read_bytes() == contents[2]
    assert (computer.home / beside).stat().st_mtime == 1_700_000_000 + 3 * 3600
    assert _outside_own(computer.home, without=beside.encode()) == before  # the current one untouched
    os.unlink(computer.home / beside)


def test_versions_are_told_apart_by_content_not_by_size_or_time(laptop):
    computer, _ = laptop
    versions = computer.json("versions", SAME)
    assert [(v["number"], len(v["archives"])) for v in versions] == [(1, 3), (2, 2)]  # abab in 1, 3, 5
    assert versions[0]["sha256"] != versions[1]["sha256"] and all(v["sha256"] for v in versions)
    assert versions[0]["last_seen"] > versions[1]["first_seen"]


def test_find_with_the_password_searches_all_computers_and_globs_match(laptop, homesync_server, computer_factory):
    other = computer_factory()  # a computer that is not enrolled
    found = other.json("find", "*.JPG", *other.remote_args(homesync_server, "joe"), input=PASSWORDS["joe"] + "\n")
    assert [r["path"] for r in found] == ["Photos/2026/beach/img[1].jpg"]
    assert len(found[0]["archives"]) == 5
    literal = other.json("find", "img[1]", *other.remote_args(homesync_server, "joe"), input=PASSWORDS["joe"] + "\n")
    assert [r["path"] for r in literal] == ["Photos/2026/beach/img[1].jpg"]  # glob characters typed as they are
    versions = other.json("versions", DEEP, "--machine", "find LAPTOP", *other.remote_args(homesync_server, "joe"),
                          input=PASSWORDS["joe"] + "\n")
    assert len(versions) == 5


def test_since_leaves_older_backups_out(laptop):
    computer, _ = laptop
    assert computer.run("find", "report", "--machine", "Find laptop", "--since", "2999-01-01").returncode == 10
    assert len(computer.json("find", "report", "--machine", "Find laptop", "--since", "1d")) == 5


def test_the_backups_keep_the_file_lists_current_here_and_sealed_on_the_server(laptop, homesync_server):
    computer, _ = laptop
    local, shared = catalogs_kept(computer, homesync_server, 5)
    assert local == shared and any(v[catalog.PATH] == DEEP for v in local.versions)
    kept = (homesync_server.data / "repos" / computer.machine_id() / "homesync-files.catalog").read_bytes()
    assert b"report.odt" not in kept and b"Documents" not in kept  # sealed: the server cannot read the names


def test_find_on_another_computer_reads_the_servers_copy_and_ends_its_one_off_key(laptop, homesync_server,
                                                                                  computer_factory):
    computer, _ = laptop
    catalogs_kept(computer, homesync_server, 5)
    machine_id = computer.machine_id()
    opened = f"SELECT count(*) FROM audit WHERE action = 'repository_open' AND machine_id = '{machine_id}'"
    before = homesync_server.index_rows(opened)[0][0]
    other = computer_factory()  # a computer that is not enrolled: no catalog of its own
    found = other.json("find", "EPORT.o", "--machine", "Find laptop", *other.remote_args(homesync_server, "joe"),
                       input=PASSWORDS["joe"] + "\n")
    assert len([r for r in found if r["path"] == DEEP]) == 5
    assert homesync_server.index_rows(opened)[0][0] == before  # no borg session: no archive was listed
    assert homesync_server.index_rows(
        f"SELECT count(*) FROM restore_grants WHERE repository_id = '{machine_id}'") == [(0,)]  # its key ended


def test_versions_of_a_folder_are_the_states_it_was_backed_up_in(laptop):
    computer, _ = laptop
    states = computer.json("versions", "Documents")
    # DEEP and SAME changed before every backup (and every ctime, by chown_tree): five states of two files
    assert [s["number"] for s in states] == [1, 2, 3, 4, 5] and all(s["type"] == "d" for s in states)
    assert [s["files"] for s in states] == [2] * 5
    assert all(s["changed"] >= 2 for s in states[1:]) and states[0]["changed"] == 0
    assert [len(s["archives"]) for s in states] == [1] * 5
    text = computer.ok("versions", "Documents/projects").stdout
    assert "FILES" in text and "--path Documents/projects --beside" in text


def _one_line(done, code: int, fragment: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("homesync: error: ") and fragment in lines[0], done.stderr


@pytest.mark.parametrize("args, code, fragment", [
    (("find", "no-such-file-anywhere", "--machine", "Find laptop"), 10, "no backed-up file matches"),
    (("find", "report", "--machine", "Nobody's laptop", "--password-stdin"), 10, "no computer named"),
    (("versions", "Documents/nothing-here.odt"), 10, "has no backup of"),
    (("versions", "../../etc/passwd"), 2, "--path"),
    (("restore", "--machine", "Find laptop", "--path", "Documents/../../etc/passwd"), 2, "--path"),
    (("restore", "--machine", "Find laptop", "--path", "Documents/none.odt"), 10, "holds no"),
    (("restore", "--machine", "Find laptop", "--path", DEEP, "--target", "notes.txt"), 21, "is a file"),
    (("find", "report", "--since", "last tuesday", "--machine", "Find laptop"), 2, "--since"),
])
def test_bad_input_is_one_line_and_writes_nothing(laptop, args, code, fragment):
    computer, _ = laptop
    before = _outside_own(computer.home)
    args = tuple(str(computer.home / a) if a == "notes.txt" else a for a in args)
    done = computer.run(*args, input=PASSWORDS["joe"] + "\n")
    _one_line(done, code, fragment)
    assert _outside_own(computer.home) == before


def test_a_file_list_that_cannot_be_kept_never_fails_the_backup(laptop, homesync_server):
    computer, _ = laptop  # last: it adds a sixth backup
    folder = computer.home / ".cache/homesync/files"
    aside = folder.with_name("files.aside")
    folder.rename(aside)
    folder.write_bytes(b"not a folder")  # nothing can be kept there, not even the keeper's log
    try:
        _write(computer.home, "notes.txt", b"changed once more\n")
        chown_tree(computer.home)
        assert computer.json("backup")["result"] == "success"
    finally:
        folder.unlink()
        aside.rename(folder)
    # and find catches up by itself: the sixth backup is searched
    assert len(computer.json("find", "notes.txt", "--machine", "Find laptop")) == 2


def _backed_up_once_then_changed(server, computer, name: str):
    """Enroll computer as name, back up Documents/plan.txt and keep its file list, then
    write Documents/fresh notes.txt, which is in no backup yet; return computer."""
    _write(computer.home, "Documents/plan.txt", b"the first backup\n")
    chown_tree(computer.home)
    assert computer.enroll(server, "joe", name).returncode == 0
    assert computer.json("backup")["result"] == "success"
    catalogs_kept(computer, server, 1)
    time.sleep(1.1)  # archive names carry seconds
    _write(computer.home, "Documents/fresh notes.txt", b"written after the first backup\n")
    chown_tree(computer.home)
    return computer


def test_a_search_during_the_keeping_after_a_backup_does_not_wait_for_it_and_says_so(homesync_server,
                                                                                     computer_factory):
    computer = _backed_up_once_then_changed(homesync_server, computer_factory(), "Busy laptop")
    with catalog_lock(computer):  # the keeping after the next backup cannot start its listing
        assert computer.json("backup")["result"] == "success"
        started = time.monotonic()
        found = computer.run("find", "PLAN.", "--machine", "Busy laptop", "--json")
        took = time.monotonic() - started
        print(f"find during the keeping after a backup: {took:.2f} s")
        assert found.returncode == 0, found.stderr
        assert "still being added to its file list" in found.stderr and "search again in a minute" in found.stderr
        assert took < 60, f"find waited {took:.0f} s for the keeping (it waits up to 300 s for the lock)"
        fresh = computer.run("find", "fresh notes", "--machine", "Busy laptop")
        assert fresh.returncode == 10 and "still being added to the file lists" in fresh.stderr, fresh.stderr
    catalogs_kept(computer, homesync_server, 2)
    found = computer.json("find", "fresh notes", "--machine", "Busy laptop")
    assert [r["path"] for r in found] == ["Documents/fresh notes.txt"]


def test_a_search_the_moment_a_backup_returns_finds_the_keeping_under_way(homesync_server, computer_factory):
    computer = _backed_up_once_then_changed(homesync_server, computer_factory(), "Quick laptop")
    assert computer.json("backup")["result"] == "success"
    # the backup handed the catalog's lock to its keeper before returning: a search cannot
    # take it first (and list the new archive itself while the keeper waits for it)
    lock = computer.home / ".cache/homesync/files" / f"{computer.machine_id()}.lock"
    assert history._busy(lock)
    found = computer.run("find", "PLAN.", "--machine", "Quick laptop", "--json")
    assert found.returncode == 0, found.stderr
    assert "1 of the newest backups" in found.stderr and "still being added" in found.stderr, found.stderr
    catalogs_kept(computer, homesync_server, 2)
    assert not history._busy(lock)
    found = computer.json("find", "fresh notes", "--machine", "Quick laptop")
    assert [r["path"] for r in found] == ["Documents/fresh notes.txt"]
