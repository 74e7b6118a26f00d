"""Restore planning: phases partition the archive, hard links stay together, the
preview reads the target without writing."""

from __future__ import annotations

import os

from hypothesis import given, strategies as st

from homesync import restore_plan
from tests.support import trees
from homesync.restore_plan import DOCUMENTS, REST, SETTINGS

top_names = st.sampled_from([".bashrc", ".config", ".ssh", "Documents", "Desktop", "Pictures", "Videos", "a?b",
                             ".we?rd", "Projects"])


@st.composite
def listings(draw):
    items = [{"path": ".", "type": "d", "size": 0}]
    files = []
    for i in range(draw(st.integers(1, 25))):
        path = f"{draw(top_names)}/f{i}"
        items.append({"path": path, "type": "-", "size": draw(st.integers(0, 100)), "source": ""})
        files.append(path)
    for _ in range(draw(st.integers(0, 4))):
        source = draw(st.sampled_from(files))
        items.append({"path": f"{draw(top_names)}/link{len(items)}", "type": "-", "size": 0, "source": source})
    return items


@given(listings())
def test_every_item_is_restored_by_exactly_one_phase(items):
    phases = restore_plan.plan_phases(items)
    assert phases[-1].name == REST and [p.name for p in phases] == sorted(
        (p.name for p in phases), key=[SETTINGS, DOCUMENTS, REST].index)
    for item in items[1:]:
        assert sum(p.holds(item["path"]) for p in phases) == 1, item


@given(listings())
def test_hard_links_never_straddle_phases(items):
    phases = restore_plan.plan_phases(items)
    phase_of = {i["path"]: next(p.name for p in phases if p.holds(i["path"])) for i in items[1:]}
    for item in items:
        if item.get("source"):
            assert phase_of[item["path"]] == phase_of[item["source"]]


def test_settings_then_documents_then_the_rest():
    items = [{"path": p, "type": "d", "size": 0} for p in (".", ".config", "Documents", "Videos", "a?b")]
    phases = restore_plan.plan_phases(items)
    assert [(p.name, p.paths) for p in phases[:2]] == [(SETTINGS, (".config",)), (DOCUMENTS, ("Documents",))]
    assert phases[2].excludes == (".config", "Documents") and phases[2].holds("a?b") and phases[2].holds("Videos")


def test_the_preview_classifies_and_writes_nothing(tmp_path):
    (tmp_path / "same.txt").write_bytes(b"abc")
    os.utime(tmp_path / "same.txt", ns=(0, 1_000_000_000))
    (tmp_path / "differs.txt").write_bytes(b"local")
    items = [{"path": ".", "type": "d", "size": 0, "mtime": "1970-01-01T00:00:00.000000"},
             {"path": "same.txt", "type": "-", "size": 3, "mtime": "1970-01-01T00:00:01.000000"},
             {"path": "differs.txt", "type": "-", "size": 9, "mtime": "1970-01-01T00:00:01.000000"},
             {"path": "new.txt", "type": "-", "size": 7, "mtime": "1970-01-01T00:00:01.000000"},
             {"path": ".config/homesync/x", "type": "-", "size": 1, "mtime": "1970-01-01T00:00:01.000000"}]
    before = sorted(os.listdir(tmp_path))
    plan = restore_plan.preview(items, tmp_path, [".config/homesync"])
    assert (plan.new_entries, plan.new_bytes, plan.identical) == (1, 7 + 9, 1)
    assert plan.kept_aside == ["differs.txt"] and plan.protected == [".config/homesync/x"]
    assert sorted(os.listdir(tmp_path)) == before


def test_a_selection_restores_paths_at_any_depth_with_their_parent_folders_only():
    phase = restore_plan.selection(["Documents/a/b/report.odt", "notes.txt", "x/*?[]"])
    assert phase.paths == ("pp:Documents/a/b/report.odt", "pp:notes.txt", "pp:x/*?[]")
    assert phase.patterns == ("+pf:Documents", "+pf:Documents/a", "+pf:Documents/a/b", "+pf:x")
    assert phase.holds("anything listed") and phase.selection


def test_a_selected_path_missing_from_the_listing_is_named():
    items = [{"path": "Documents", "type": "d"}, {"path": "Documents/caf?", "type": "-"}]
    assert restore_plan.missing(["Documents/caf\udce9", "Documents/other"], items) == ["Documents/other"]


@given(st.lists(st.lists(trees.names(), min_size=1, max_size=8), min_size=1, max_size=4))
def test_any_selection_names_each_path_literally_and_every_folder_above_it(parts_lists):
    paths = [os.fsdecode(b"/".join(parts)) for parts in parts_lists]
    phase = restore_plan.selection(paths)
    assert phase.paths == tuple(f"pp:{p}" for p in paths)
    folders = {p.removeprefix("+pf:") for p in phase.patterns}
    assert folders == {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    listed = [{"path": restore_plan.as_listed(p), "type": "-"} for p in paths]  # as borg lists them
    assert restore_plan.missing(paths, listed) == []
    assert restore_plan.missing(paths, listed[1:]) == [p for p in paths if restore_plan.as_listed(p)
                                                       not in {i["path"] for i in listed[1:]}]


@st.composite
def big_listings(draw):
    """Listings whose names weigh enough (up to 400 MB each) for a phase to be split."""
    items = draw(listings())
    for item in items:
        if item["type"] == "-" and not item.get("source"):
            item["size"] = draw(st.integers(0, 400 << 20))
    return items


@given(big_listings(), st.integers(1, 4), st.lists(st.integers(0, 2 << 30), max_size=2))
def test_splitting_loses_and_doubles_no_entry_and_never_splits_hard_links(items, jobs, busy):
    phases = restore_plan.joined(restore_plan.plan_phases(items))
    parts = [(phase, part) for phase in phases for part in restore_plan.split(phase, items, jobs, tuple(busy))]
    assert all(part.name == phase.name for phase, part in parts)
    for phase in phases:
        mine = [part for p, part in parts if p is phase]
        assert len(mine) <= max(1, jobs)
        assert [bool(p.paths) for p in mine[:-1]] == [True] * (len(mine) - 1)  # by exclusion: only the last
    part_of = {}
    for item in items[1:]:
        holders = [i for i, (phase, part) in enumerate(parts) if part.holds(item["path"])]
        assert len(holders) == 1, (item, [p for _, p in parts])
        assert parts[holders[0]][0].holds(item["path"]), "a part restores only what its phase restores"
        merges = parts[holders[0]][1].merges
        assert not merges or sum(m.holds(item["path"]) for m in merges) == 1, "merged once from a joint part"
        part_of[item["path"]] = holders[0]
    for item in items:
        if item.get("source"):
            assert part_of[item["path"]] == part_of[item["source"]], item


def test_a_heavy_rest_is_split_and_its_unlistable_names_stay_in_the_part_by_exclusion():
    items = [{"path": ".", "type": "d", "size": 0}]
    for name, size in (("Pictures", 300 << 20), ("Videos", 200 << 20), ("Music", 100 << 20), ("a?b", 1)):
        items.append({"path": f"{name}/x", "type": "-", "size": size, "source": ""})
    items.append({"path": "Music/y", "type": "-", "size": 0, "source": "Videos/x"})
    rest = restore_plan.plan_phases(items)[-1]
    first, last = restore_plan.split(rest, items, 2)
    assert first.paths == ("Music", "Videos") and last.excludes == ("Music", "Videos"), "linked: one part"
    assert last.holds("a?b/x") and last.holds("Pictures/x") and not last.holds("Music/y")
    assert restore_plan.split(rest, items[:2], 2) == [rest], "300 MB in one name: nothing to balance"


def test_a_small_phase_is_not_split():
    items = [{"path": ".", "type": "d", "size": 0}] + [
        {"path": f"n{i}/x", "type": "-", "size": 1 << 20, "source": ""} for i in range(8)]
    rest = restore_plan.plan_phases(items)[-1]
    assert restore_plan.split(rest, items, 4) == [rest]


def test_settings_and_documents_are_extracted_together_and_merged_in_that_order():
    items = [{"path": p, "type": "d", "size": 0} for p in (".", ".config", "Documents", "Videos")]
    joint, rest = restore_plan.joined(restore_plan.plan_phases(items))
    assert [m.name for m in joint.merges] == [SETTINGS, DOCUMENTS] and joint.paths == (".config", "Documents")
    assert rest.name == REST and restore_plan.split(joint, items, 4) == [joint]
    only_rest = restore_plan.plan_phases(items)[2:]
    assert restore_plan.joined(only_rest) == only_rest, "a resumed restore with one early phase done"


early_tops = st.one_of(top_names,
                       st.sampled_from(["Documents2", "Desktop.bak", "x.", "..", ". ", "re:.", "pp:Documents"]),
                       st.text(st.characters(blacklist_characters="/\x00"), min_size=1, max_size=6))


@given(st.lists(st.tuples(early_tops, st.booleans()), min_size=1, max_size=12))
def test_the_early_extractions_select_exactly_the_early_names_as_borg_matches_them(tops):
    # what `borg extract PATHS` and `borg extract --exclude P …` select, by borg's own matcher
    from borg.patterns import PatternMatcher, parse_exclude_pattern
    items = [{"path": ".", "type": "d", "size": 0}]
    items += [{"path": f"{top}/f" if deep else top, "type": "-", "size": 1, "source": ""} for top, deep in tops
              if top not in (".", "..")]
    (paths, _), (_, excludes) = restore_plan.EARLY_SETTINGS_AND_DOCUMENTS, restore_plan.EARLY_REST
    settings_and_documents = PatternMatcher()
    settings_and_documents.add_includepaths(list(paths))
    rest = PatternMatcher(fallback=True)
    rest.add_inclexcl([parse_exclude_pattern(p) for p in excludes])
    rest.add_includepaths([])
    early = restore_plan.early_names(items)
    for item in items[1:]:
        first = restore_plan.top_level(item["path"]) in early
        assert bool(settings_and_documents.match(item["path"])) == first, item["path"]
        assert bool(rest.match(item["path"])) == (not first), item["path"]


@given(listings(), st.integers(1, 4))
def test_an_early_extraction_is_kept_only_for_a_part_restoring_exactly_what_it_selects(items, jobs):
    phases = restore_plan.joined(restore_plan.plan_phases(items))
    parts = [part for phase in phases for part in restore_plan.split(phase, items, max(1, jobs - (phase != phases[0])))]
    names = restore_plan.early_names(items)
    moved = bool(phases[0].merges) and set(phases[0].paths) != names
    kept = [restore_plan.extracts_early(part, selection, items)
            for part, selection in zip(parts, restore_plan.early(jobs))]
    if moved:  # a hard link or an unlistable name took a settings or documents name into the rest
        assert not any(kept)
    elif phases[0].merges:
        assert kept[0] and (len(kept) == 1 or kept[1] == (len(parts) == 2)), (kept, parts)
    for part, selection, keep in zip(parts, restore_plan.early(jobs), kept):
        if keep:
            assert {restore_plan.top_level(i["path"]) for i in items[1:] if part.holds(i["path"])} == (
                names if selection == restore_plan.EARLY_SETTINGS_AND_DOCUMENTS
                else {restore_plan.top_level(i["path"]) for i in items[1:]} - names)


def test_one_early_phase_alone_is_one_extraction_never_split():
    items = [{"path": ".", "type": "d", "size": 0}] + [
        {"path": f".n{i}/x", "type": "-", "size": 200 << 20, "source": ""} for i in range(4)]
    first, rest = restore_plan.joined(restore_plan.plan_phases(items))
    assert [m.name for m in first.merges] == [SETTINGS] and restore_plan.split(first, items, 4) == [first]
    assert restore_plan.extracts_early(first, restore_plan.EARLY_SETTINGS_AND_DOCUMENTS, items)
    assert restore_plan.extracts_early(rest, restore_plan.EARLY_REST, items)


def test_with_no_settings_or_documents_the_rest_is_the_early_extraction_it_needs():
    items = [{"path": ".", "type": "d", "size": 0}, {"path": "Pictures/x", "type": "-", "size": 1, "source": ""}]
    (rest,) = restore_plan.joined(restore_plan.plan_phases(items))
    assert not restore_plan.extracts_early(rest, restore_plan.EARLY_SETTINGS_AND_DOCUMENTS, items)
    assert restore_plan.extracts_early(rest, restore_plan.EARLY_REST, items)


@given(big_listings(), st.integers(1, 4))
def test_the_parts_of_a_restore_started_early_keep_every_early_extraction_they_can(items, jobs):
    from homesync.actions.restore import _parts
    todo = restore_plan.joined(restore_plan.plan_phases(items))
    parts = _parts(todo, items, jobs)
    rest = [p for p in parts if p.name == REST]
    assert len(parts) - len(rest) <= 1 and len(rest) <= jobs, "settings and documents, and the rest in up to jobs"
    early = restore_plan.early(jobs)
    first = set(todo[0].paths) if todo[0].merges else set()
    kept = [p for p in parts if any(restore_plan.extracts_early(p, s, items) for s in early)]
    if first == restore_plan.early_names(items):  # no hard link or unlistable name moved one into the rest
        if first or jobs <= 2:
            assert kept[:1] == parts[:1], "the first part is one started early"
        if jobs <= 2 and len(rest) <= 1:
            assert kept == parts, "up to two extractions and the rest one part: every part was started early"
    else:
        assert not kept


def test_the_rest_is_split_around_settings_and_documents_the_part_after_them_last():
    items = [{"path": ".", "type": "d", "size": 0}]
    for name, size in ((".config", 1), ("Documents", 500 << 20), ("Pictures", 600 << 20), ("Music", 300 << 20),
                       ("Videos", 300 << 20)):
        items.append({"path": f"{name}/x", "type": "-", "size": size, "source": ""})
    from homesync.actions.restore import _parts
    joint, idle, after = _parts(restore_plan.joined(restore_plan.plan_phases(items)), items, 2)
    assert joint.merges and idle.paths == ("Pictures", "Videos"), "the idle extraction's part first"
    assert after.excludes == (".config", "Documents", "Pictures", "Videos") and after.holds("Music/x")
    lanes = (restore_plan.weight(idle, items), restore_plan.weight(joint, items) + restore_plan.weight(after, items))
    assert abs(lanes[0] - lanes[1]) <= (300 << 20) + restore_plan.ENTRY_WEIGHT, "the two extractions end together"


def test_many_small_files_are_not_split_whatever_their_count():
    items = [{"path": ".", "type": "d", "size": 0}] + [
        {"path": f"d{i % 40}/f{i}", "type": "-", "size": 4096, "source": ""} for i in range(30_000)]
    (rest,) = restore_plan.joined(restore_plan.plan_phases(items))
    assert restore_plan.split(rest, items, 4) == [rest], "120 MB of files: entries alone never make a part"
