"""What a drill refuses in an archive's listing before extracting it: unnormalised
paths, items below a non-directory; what it leaves out (specials) and how it sizes the
restore (the listing's regular files, hard links once)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homesync_server.actions.drill_safety import path_problem, summary, vet_listing


def item(path, kind="-", size=0, source=""):
    return {"path": path, "type": kind, "size": size, "source": source, "linktarget": source}


def test_the_symlink_escape_of_issue_11_is_refused():
    vetting = vet_listing([item("a", "d"), item("a/b/c", "c"), item("a/./b", "l", source="../../.."),
                           item("a/b/users.json", size=40)])
    assert vetting.problems == ["'a/./b': an empty, '.' or '..' component"]


def test_unnormalised_paths_are_refused():
    for path in ("/etc/passwd", "a/", "a//b", "./a", "a/..", "../a", "", "a\0b", "."):
        assert vet_listing([item(path)]).problems, path
    assert path_problem(".", root_allowed=True) is None and vet_listing([item(".", "d")]).problems == []


def test_an_item_below_anything_but_a_directory_is_refused_whatever_the_order():
    for parent_kind in ("l", "-", "c", "p"):
        assert vet_listing([item("a", parent_kind, source="/" if parent_kind == "l" else ""),
                            item("a/x")]).problems
        assert vet_listing([item("a/x"), item("a", parent_kind)]).problems
    assert vet_listing([item("a", "d"), item("a/b", "d"), item("a/b/x")]).problems == []
    assert vet_listing([item("a/x"), item("a/x")]).problems == ["'a/x': listed twice"]


def test_specials_are_left_out_and_sizes_come_from_the_listing():
    vetting = vet_listing([item(".", "d"), item("dev", "c"), item("fifo", "p"), item("sock", "s"),
                           item("f", size=10), item("g", size=5), item("g-again", size=5, source="g"),
                           item("link", "l", source="/etc/shadow")])
    assert vetting.problems == [] and vetting.specials == ["dev", "fifo", "sock"]
    assert (vetting.files, vetting.bytes) == (2, 15)
    assert vet_listing([item("h", source="../x")]).problems == [
        "'h': a hard link to '../x', an empty, '.' or '..' component"]


def test_a_summary_names_the_first_problems_and_counts_the_rest():
    assert summary([str(i) for i in range(7)]) == "0; 1; 2; 3; 4 (and 2 more)"


_components = st.sampled_from(["a", "b", "c.txt", ".", "..", "", "é"])
_paths = st.lists(_components, min_size=1, max_size=4).map("/".join)
_kinds = st.sampled_from(["d", "-", "l", "c", "p"])


@given(st.lists(st.tuples(_paths, _kinds), max_size=12))
def test_no_listing_vetted_clean_can_make_borg_leave_the_target(entries):
    """Whatever the listing, if it is vetted clean then every path is normalised and
    every listed ancestor of every item is a directory: borg creates each item below a
    real directory inside the target, never through a link."""
    vetting = vet_listing([item(p, k) for p, k in entries])
    if vetting.problems:
        return
    kinds = {}
    for path, kind in entries:
        assert path == "." or not ({"", ".", ".."} & set(path.split("/")))
        kinds.setdefault(path, kind)
    for path, _ in entries:
        parts = path.split("/")
        assert all(kinds.get("/".join(parts[:i]), "d") == "d" for i in range(1, len(parts)))
