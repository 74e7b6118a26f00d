"""The file catalog: versions are ranges of consecutive archives, an archive older than
the newest one known rebuilds it, and patterns match substrings and globs, any case."""

from __future__ import annotations

import os
import time

from hypothesis import given
from hypothesis import strategies as st

from homesync import catalog
from homesync.actions import history
from homesync.actions.restore import Source
from homesync.catalog import Catalog


def _item(path, size=1, mtime="2026-11-20T14:02:00.000000", kind="-"):
    return {"path": path, "type": kind, "size": size, "mtime": mtime, "ctime": mtime}


def _archive(n):
    return (f"id{n}", f"archive-{n}", f"2026-11-{n + 10:02d}T00:00:00.000000")


def test_a_version_grows_while_it_stays_and_a_change_starts_a_new_one():
    cat = Catalog()
    cat.add(_archive(1), [_item("."), _item("a"), _item("b")])
    cat.add(_archive(2), [_item("a"), _item("b", size=2)])
    cat.add(_archive(3), [_item("a"), _item("b")])
    ranges = sorted((v[catalog.PATH], v[catalog.SIZE], v[catalog.FIRST], v[catalog.LAST]) for v in cat.versions)
    assert ranges == [("a", 1, 0, 2), ("b", 1, 0, 0), ("b", 1, 2, 2), ("b", 2, 1, 1)]
    live = {"archive-1", "archive-3"}  # archive-2 was pruned
    a = next(v for v in cat.versions if v[catalog.PATH] == "a")
    assert [x[1] for x in cat.held(a, live)] == ["archive-1", "archive-3"]
    assert [x[1] for x in cat.held(a, live, since="2026-11-12")] == ["archive-3"]


def test_only_new_archives_are_listed_and_an_older_one_rebuilds(tmp_path):
    cat = Catalog()
    cat.add(_archive(2), [_item("a")])
    cat.save(tmp_path / "c")
    again = Catalog.load(tmp_path / "c")
    assert again == cat and not again.lacks(["archive-2"]) and again.lacks(["archive-3"])
    assert again.to_add([_archive(2), _archive(3)]) == ([_archive(3)], False)
    assert again.to_add([_archive(1), _archive(2)]) == ([_archive(1), _archive(2)], True)
    (tmp_path / "c").write_bytes(b"garbage")
    assert Catalog.load(tmp_path / "c") == Catalog()


def test_patterns_are_substrings_or_globs_in_any_case():
    accept = catalog.matcher("EPORT")
    assert accept("Documents/Report.odt") and not accept("Documents/notes.txt")
    assert catalog.matcher("*.ODT")("Documents/deep/report.odt")
    assert not catalog.matcher("*.ODT", case_sensitive=True)("Documents/deep/report.odt")
    assert catalog.matcher("img[1]")("Photos/img[1].jpg")  # glob characters typed as they are
    assert catalog.matcher("Documents/*/r*")("Documents/deep/report.odt")
    assert not catalog.matcher("r*")("Documents/deep/notes.txt")


@given(st.text(min_size=1, max_size=30))
def test_any_name_is_found_by_itself(name):
    assert catalog.matcher(name)(f"some/folder/{name}")


def test_a_sealed_catalog_opens_only_with_its_passphrase_for_its_machine():
    cat = Catalog()
    cat.add(_archive(1), [_item("Documents/report.odt"), _item(os.fsdecode(b"caf\xe9"))])
    cat.absent = ["archive-0"]
    blob = catalog.seal(cat, b"p" * 64, "0123456789abcdef")
    assert b"report.odt" not in blob and b"archive-1" not in blob
    assert catalog.unseal(blob, b"p" * 64, "0123456789abcdef") == cat
    assert catalog.unseal(blob, b"q" * 64, "0123456789abcdef") is None
    assert catalog.unseal(blob, b"p" * 64, "fedcba9876543210") is None  # not another machine's
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert catalog.unseal(tampered, b"p" * 64, "0123456789abcdef") is None
    assert catalog.unseal(b"garbage", b"p" * 64, "0123456789abcdef") is None


def test_a_folders_versions_are_the_runs_of_archives_in_which_nothing_below_it_changed():
    cat = Catalog()
    folder = [_item("Docs", kind="d"), _item("Docs/a"), _item("Docs/sub", kind="d"), _item("Docs/sub/b", size=5)]
    cat.add(_archive(1), [*folder, _item("other")])
    cat.add(_archive(2), [*folder, _item("other", size=9)])   # only outside the folder
    cat.add(_archive(3), [*folder[:3], _item("Docs/sub/b", size=6), _item("Docs/sub/c")])
    cat.add(_archive(4), [*folder[:3], _item("Docs/sub/b", size=6), _item("Docs/sub/c")])
    source = Source(None, b"", {"id": "m", "name": "Laptop"}, None)
    states = history._folder_states(source, "Docs", "Docs", cat, {a[1] for a in cat.archives} - {"archive-4"})
    assert [(s["number"], s["archives"], s["files"], s["size"], s["changed"]) for s in states] == [
        (1, ["archive-2", "archive-1"][::-1], 2, 6, 0), (2, ["archive-3"], 3, 8, 2)]
    assert states[-1]["restore_from"] == "archive-3" and states[0]["type"] == "d"


def test_a_refresh_waits_for_another_then_goes_on_without_the_lock(tmp_path):
    lock = tmp_path / "files" / "m.lock"
    with history._locked(lock):
        start = time.monotonic()
        with history._locked(lock, wait=0.3):  # another refresh holds it: wait, then go on
            assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    with history._locked(lock, wait=5):  # free again: at once
        assert time.monotonic() - start < 1
