"""Real borg, several extractions at once: a home split into parts (hard links across
two names, a name borg cannot list in UTF-8, names that look like borg patterns) comes back bit for bit when the parts are
extracted in parallel and merged in plan order; closing early leaves no staging."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homesync import borg, extraction, merge, restore_plan
from homesync.errors import RestoreError
from tests.support.trees import assert_same_tree, snapshot

BORG = Path(sys.executable).parent / "borg"
pytestmark = pytest.mark.skipif(not BORG.exists(), reason="borg is not installed in this environment")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[extraction.Archive, Path, list[dict]]:
    base = tmp_path_factory.mktemp("parallel")
    environment = borg.BorgEnvironment(base_dir=base / "borg-home",
                                       extra={"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"})
    source = base / "home"
    for name in (".config/app", "Documents/Work", "Pictures/2024", "Music", "Videos", "Projects/x/y"):
        (source / name).mkdir(parents=True)
    for n, folder in enumerate(("Pictures/2024", "Music", "Videos", "Projects/x/y", "Documents/Work")):
        for i in range(20):
            (source / folder / f"f{i}.bin").write_bytes(os.urandom(1000 + 97 * i + n))
    (source / ".config/app/settings.conf").write_text("[general]\n")
    os.link(source / "Music/f1.bin", source / "Videos/same-as-music.bin")
    os.symlink("../Music/f2.bin", source / "Projects/link")
    for name in ("re:.", "sh:*", "ab:notes"):  # top-level names borg would read as patterns unless told `pp:`
        (source / name).mkdir()
        (source / name / "inside.txt").write_text(name)
    (source / os.fsdecode(b"caf\xe9")).mkdir()
    (source / os.fsdecode(b"caf\xe9") / "menu.txt").write_text("soup")
    repo = str(base / "repo")
    env = environment.build()
    subprocess.run([str(BORG), "init", "--encryption=none", repo], env=env, check=True, capture_output=True)
    subprocess.run([str(BORG), "create", f"{repo}::a1", "."], env=env, cwd=source, check=True, capture_output=True)
    items = borg.run_borg(borg.make_list_files_command(repo, "a1"), environment, stdout_lines=True).json["lines"]
    return extraction.Archive(repo, "a1", environment, b""), source, items


def _parts(items: list[dict], jobs: int, monkeypatch) -> list[restore_plan.Phase]:
    monkeypatch.setattr(restore_plan, "MIN_PART_BYTES", 1)
    return [part for phase in restore_plan.plan_phases(items) for part in restore_plan.split(phase, items, jobs)]


def test_parts_extracted_at_once_and_merged_in_order_give_the_archive_back(archive, tmp_path, monkeypatch):
    reading, source, items = archive
    parts = _parts(items, 3, monkeypatch)
    assert len(parts) >= 4 and [p.name for p in parts] == sorted((p.name for p in parts), key=[
        restore_plan.SETTINGS, restore_plan.DOCUMENTS, restore_plan.REST].index)
    target = tmp_path / "target"
    target.mkdir()
    seen = []
    with extraction.Extractions(reading, target, 3, progress=lambda f, s: seen.append(f)) as runs:
        runs.start(items, parts)
        for number in range(len(parts)):
            staged = runs.take(number)
            merge.merge_tree(staged.staging, target, tmp_path / "kept", restore_root_metadata=number == len(parts) - 1)
            runs.merged(staged)
    assert_same_tree(snapshot(source), snapshot(target), ignore_root=True)
    assert os.stat(target / "Music/f1.bin").st_ino == os.stat(target / "Videos/same-as-music.bin").st_ino
    assert not list(target.glob(extraction.STAGING_PREFIX + "*"))
    assert seen and max(seen) == 1.0


def test_closing_before_every_part_is_taken_removes_their_staging(archive, tmp_path, monkeypatch):
    reading, _, items = archive
    parts = _parts(items, 2, monkeypatch)
    target = tmp_path / "target"
    target.mkdir()
    with extraction.Extractions(reading, target, 2) as runs:
        runs.start(items, parts)
        runs.take(0)
    assert not list(target.iterdir())


def test_a_part_that_does_not_match_the_listing_is_refused(archive, tmp_path, monkeypatch):
    reading, _, items = archive
    parts = _parts(items, 1, monkeypatch)
    lying = [dict(i, size=i["size"] + 1) if i["path"] == ".config/app/settings.conf" else i for i in items]
    target = tmp_path / "target"
    target.mkdir()
    with extraction.Extractions(reading, target, 1) as runs:
        runs.start(lying, parts)
        with pytest.raises(RestoreError, match="do not match"):
            runs.take(0)
    assert not list(target.iterdir())


def test_extractions_started_before_the_listing_is_there_are_kept(archive, tmp_path, monkeypatch):
    reading, source, items = archive
    monkeypatch.setattr(restore_plan, "MIN_PART_BYTES", 1)
    phases = restore_plan.joined(restore_plan.plan_phases(items))
    assert set(phases[0].paths) == restore_plan.early_names(items)  # no hard link moved one into the rest
    parts = [phases[0], *restore_plan.split(phases[1], items, 1)]
    target = tmp_path / "target"
    target.mkdir()
    with extraction.Extractions(reading, target, 2, early=restore_plan.early(2)) as runs:
        deadline = time.monotonic() + 60
        while not list(target.glob(extraction.STAGING_PREFIX + "*/.config/app/settings.conf")) or not list(
                target.glob(extraction.STAGING_PREFIX + "*/Pictures")):
            assert time.monotonic() < deadline, "both extracting before the plan is there"
            time.sleep(0.05)
        runs.start(items, parts)
        for number, part in enumerate(parts):
            staged = runs.take(number)
            assert staged.part == part and staged.expected["-"] > 0
            merge.merge_tree(staged.staging, target, tmp_path / "kept", restore_root_metadata=number == len(parts) - 1)
            runs.merged(staged)
    assert_same_tree(snapshot(source), snapshot(target), ignore_root=True)
    assert os.stat(target / "Music/f1.bin").st_ino == os.stat(target / "Videos/same-as-music.bin").st_ino
    assert not list(target.glob(extraction.STAGING_PREFIX + "*"))


def test_a_rest_split_around_settings_and_documents_stops_the_early_rest_and_comes_back_whole(
        archive, tmp_path, monkeypatch):
    # two extractions: settings and documents, then the rest's last part on the same one
    from homesync.actions.restore import _parts
    reading, source, items = archive
    monkeypatch.setattr(restore_plan, "MIN_PART_BYTES", 1)
    parts = _parts(restore_plan.joined(restore_plan.plan_phases(items)), items, 2)
    assert [bool(p.merges) for p in parts] == [True, False, False], parts
    assert not parts[-1].paths and parts[1].paths, "the part after settings and documents works by exclusion"
    target = tmp_path / "target"
    target.mkdir()
    with extraction.Extractions(reading, target, 2, early=restore_plan.early(2)) as runs:
        runs.start(items, parts)
        for number, part in enumerate(parts):
            staged = runs.take(number)
            assert staged.part == part
            merge.merge_tree(staged.staging, target, tmp_path / "kept", restore_root_metadata=number == len(parts) - 1)
            runs.merged(staged)
    assert_same_tree(snapshot(source), snapshot(target), ignore_root=True)
    assert os.stat(target / "Music/f1.bin").st_ino == os.stat(target / "Videos/same-as-music.bin").st_ino
    assert not list(target.glob(extraction.STAGING_PREFIX + "*"))


def test_early_extractions_the_plan_does_not_use_are_stopped_and_leave_nothing(archive, tmp_path):
    reading, source, items = archive
    everything = [restore_plan.Phase(restore_plan.REST, excludes=(".config",)),
                  restore_plan.Phase(restore_plan.REST, paths=(".config",))]  # neither is what an early one selects
    target = tmp_path / "target"
    target.mkdir()
    with extraction.Extractions(reading, target, 1, early=restore_plan.early(2)) as runs:
        runs.start(items, everything)
        first = runs.take(0)
        assert first.part == everything[0] and len(list(target.iterdir())) <= 2, "the early stagings are gone"
        for number, staged in enumerate((first, runs.take(1))):
            merge.merge_tree(staged.staging, target, tmp_path / "kept", restore_root_metadata=number == 1)
            runs.merged(staged)
    assert_same_tree(snapshot(source), snapshot(target), ignore_root=True)
    assert not list(target.glob(extraction.STAGING_PREFIX + "*"))


def test_closing_while_early_extractions_wait_for_the_listing_leaves_nothing(archive, tmp_path):
    reading, _, _ = archive
    target = tmp_path / "target"
    target.mkdir()
    with extraction.Extractions(reading, target, 2, early=restore_plan.early(2)):
        time.sleep(0.5)
    assert not list(target.iterdir())
