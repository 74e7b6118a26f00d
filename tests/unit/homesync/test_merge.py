"""merge_tree and scan_plan: restored trees arrive bit for bit, nothing local is lost,
protected paths and everything outside the target stay untouched."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from homesync.errors import RestoreError
from homesync.merge import MergeResult, merge_tree, scan_plan
from tests.support.trees import (
    DirNode, FileNode, SymlinkNode, TreeSpec, assert_same_tree, build_tree, diff_snapshots, dirs,
    files, kitchen_sink, make_home, mutate_home, names, snapshot, symlinks, tree_specs, unique_name,
)

HYPOTHESIS = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STAGING = ".homesync-restore-test"
KEPT = ".homesync-kept-test"


@contextmanager
def workspace():
    """A fresh base directory holding target/ (with the staging directory inside it, as
    the restore makes it) and outside/ (which no merge may touch)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "target").mkdir()
        (base / "outside").mkdir()
        (base / "outside" / "sentinel").write_bytes(b"outside the target")
        yield base, base / "target", base / "target" / STAGING, base / "target" / KEPT


def plan_then_merge(staging: Path, target: Path, kept: Path, protected=(), base: Path | None = None) -> MergeResult:
    """Run scan_plan (checking it changes nothing), then merge_tree; check they agree."""
    watched = base or target
    before = snapshot(watched)
    plan = scan_plan(staging, target, protected, kept_dir=kept)
    assert_same_tree(before, snapshot(watched))
    result = merge_tree(staging, target, kept, protected, restore_root_metadata=True)
    assert plan == result
    assert not staging.exists()
    return result


def restrict(snap: dict, keep) -> dict:
    """Return the entries of snap whose path satisfies keep, with hard-link groups
    narrowed to the names that remain."""
    out = {p: dict(e) for p, e in snap.items() if keep(p)}
    for entry in out.values():
        if entry.get("links"):
            links = tuple(p for p in entry["links"] if p in out)
            entry["links"] = links if len(links) > 1 else None
    return out


def under(path: bytes, top: bytes) -> bool:
    return path == top or path.startswith(top + b"/")


def inodes(root: Path) -> dict[bytes, int]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, os.fsencode(root))] = os.lstat(path).st_ino
    return found


def rel(path: bytes) -> Path:
    return Path(os.fsdecode(path))


# -- hypothesis properties ---------------------------------------------------------------


@HYPOTHESIS
@given(tree_specs())
@example(kitchen_sink())
def test_merge_into_empty_target_reproduces_the_archive(spec):
    with workspace() as (base, target, staging, kept):
        build_tree(staging, spec)
        expected = snapshot(staging)
        result = plan_then_merge(staging, target, kept, base=base)
        assert_same_tree(expected, snapshot(target))
        assert result.restored == len(expected) - 1
        assert result.bytes_restored == sum(
            e["size"] for p, e in expected.items() if e["kind"] == "file" and (not e["links"] or p == e["links"][0]))
        assert (result.skipped_identical, result.kept_aside, result.protected_skipped) == (0, [], [])
        assert not kept.exists()


@st.composite
def local_overlay(draw, archived: DirNode, depth: int = 2) -> DirNode:
    """A local tree sharing some of archived's directories and holding only entries
    whose names the archive does not have."""
    children = {}
    for name, child in archived.children.items():
        if isinstance(child, DirNode) and draw(st.booleans()):
            children[name] = draw(local_overlay(child, depth - 1))
    kinds = st.one_of(files(), symlinks(), dirs(1, 3)) if depth > 0 else st.one_of(files(), symlinks())
    taken = set(archived.children) | {STAGING.encode(), KEPT.encode()}
    for name, child in draw(st.dictionaries(names(), kinds, max_size=3)).items():
        children[unique_name(name, taken | set(children))] = child
    return draw(st.builds(DirNode, st.just(children), st.sampled_from([0o700, 0o755]), st.integers(1, 2**62),
                          st.dictionaries(st.sampled_from([b"user.comment", b"user.local"]), st.binary(max_size=8),
                                          max_size=2)))


@HYPOTHESIS
@given(tree_specs(), st.data())
def test_local_only_entries_stay_untouched(spec, data):
    with workspace() as (base, target, staging, kept):
        build_tree(target, TreeSpec(data.draw(local_overlay(spec.root))))
        local = snapshot(target)
        build_tree(staging, spec)
        archived = snapshot(staging)
        result = plan_then_merge(staging, target, kept, base=base)
        expected = dict(local)
        for path, entry in archived.items():
            if path in local:  # a directory on both sides: the archive's metadata wins
                entry = dict(entry, xattrs={**local[path]["xattrs"], **entry["xattrs"]})
            expected[path] = entry
        assert_same_tree(expected, snapshot(target))
        assert (result.kept_aside, result.skipped_identical) == ([], 0)
        assert result.restored == len([p for p in archived if p not in local])


MUTATIONS = {
    "file": ["append", "chmod", "to_dir", "to_symlink"],
    "symlink": ["retarget", "to_file"],
    "dir": ["to_file", "to_outside_symlink"],
}


def mutate(target: Path, path: bytes, kind: str, how: str, outside: Path) -> None:
    """Change one local entry so it differs from the archived one."""
    full = os.path.join(os.fsencode(target), path)
    if how == "append":
        with open(full, "ab") as f:
            f.write(b"local change")
    elif how == "chmod":
        os.chmod(full, 0o640 if stat.S_IMODE(os.lstat(full).st_mode) != 0o640 else 0o600)
    elif how == "retarget":
        os.unlink(full)
        os.symlink(b"elsewhere", full)
    else:
        _remove(full, kind)
        if how == "to_dir":
            os.mkdir(full)
            with open(os.path.join(full, b"local file"), "wb") as f:
                f.write(b"local")
        elif how == "to_file":
            with open(full, "wb") as f:
                f.write(b"local file where the archive has a " + kind.encode())
        elif how == "to_symlink":
            os.symlink(b"/etc/hostname", full)
        elif how == "to_outside_symlink":
            os.symlink(os.fsencode(outside), full)


def _remove(full: bytes, kind: str) -> None:
    if kind == "dir":
        for dirpath, dirnames, filenames in os.walk(full, topdown=False):
            for name in filenames:
                os.unlink(os.path.join(dirpath, name))
            for name in dirnames:
                p = os.path.join(dirpath, name)
                os.unlink(p) if os.path.islink(p) else os.rmdir(p)
        os.rmdir(full)
    else:
        os.unlink(full)


def oracle(archived: dict, local: dict) -> tuple[list[bytes], list[bytes]]:
    """Return (kept aside, skipped as identical) by the rules merge_tree documents,
    computed from snapshots alone."""
    kept, skipped = [], []
    same = ("kind", "mode", "size", "sha256", "target", "links")
    for path in sorted(p for p in archived if p != b"."):
        parent = path.rpartition(b"/")[0] or b"."
        if any(under(path, k) for k in kept) or local.get(parent, {}).get("kind") != "dir":
            continue  # not reached: an ancestor was kept aside or did not exist locally
        mine, theirs = archived[path], local.get(path)
        if theirs is None or (mine["kind"] == theirs["kind"] == "dir"):
            continue
        if all(mine.get(k) == theirs.get(k) for k in same):
            skipped.append(path)
        else:
            kept.append(path)
    return kept, skipped


@HYPOTHESIS
@given(tree_specs(), st.data())
def test_conflicting_local_entries_are_kept_aside_and_identical_ones_skipped(spec, data):
    with workspace() as (base, target, staging, kept):
        build_tree(target, spec)
        paths = sorted(p for p in spec.paths() if p != b".")
        chosen = data.draw(st.lists(st.sampled_from(paths), unique=True, max_size=4)) if paths else []
        outside_before = snapshot(base / "outside")
        for path in chosen:
            full = os.path.join(os.fsencode(target), path)
            if not os.path.lexists(full):
                continue  # an ancestor was replaced already
            entry = snapshot(target)[path]
            mutate(target, path, entry["kind"], data.draw(st.sampled_from(MUTATIONS[entry["kind"]])), base / "outside")
        local = snapshot(target)
        local_inodes = inodes(target)
        build_tree(staging, spec)
        archived = snapshot(staging)
        expect_kept, expect_skipped = oracle(archived, local)

        result = plan_then_merge(staging, target, kept, base=base)

        assert_same_tree(archived, snapshot(target, exclude=[KEPT]))
        assert sorted(result.kept_aside) == sorted(rel(p) for p in expect_kept)
        assert result.skipped_identical == len(expect_skipped)
        after_inodes = inodes(target)
        assert all(after_inodes[p] == local_inodes[p] for p in expect_skipped)
        if expect_kept:
            kept_snap = snapshot(kept)
            was_local = restrict(local, lambda p: any(under(p, k) for k in expect_kept))
            now_kept = restrict(kept_snap, lambda p: p in was_local)
            assert_same_tree(was_local, now_kept, ignore=["links"])
        assert_same_tree(outside_before, snapshot(base / "outside"))


@HYPOTHESIS
@given(tree_specs(), st.data())
def test_protected_paths_are_never_touched(spec, data):
    paths = sorted(p for p in spec.paths() if p != b".")
    if not paths:
        return
    protected = data.draw(st.sampled_from(paths))
    with workspace() as (base, target, staging, kept):
        local_copy = data.draw(st.booleans())
        if local_copy:
            secret = os.path.join(os.fsencode(target), protected)
            os.makedirs(os.path.dirname(secret), exist_ok=True)
            with open(secret, "wb") as f:
                f.write(b"local key, never overwritten")
        local = snapshot(target)
        build_tree(staging, spec)
        archived = snapshot(staging)
        result = plan_then_merge(staging, target, kept, [target / os.fsdecode(protected)], base=base)

        assert result.protected_skipped == [rel(protected)]
        after = snapshot(target)
        assert_same_tree(restrict(local, lambda p: under(p, protected)), restrict(after, lambda p: under(p, protected)))
        assert_same_tree(restrict(archived, lambda p: not under(p, protected)),
                         restrict(after, lambda p: not under(p, protected)))


# -- particular cases --------------------------------------------------------------------


def write(path: Path, data: bytes = b"x", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_names_that_are_not_utf8_are_kept_aside_and_restored():
    odd = os.fsdecode(b"\xff\xfe name")
    with workspace() as (base, target, staging, kept):
        write(target / odd / "f", b"local")
        write(staging / odd / "f", b"restored")
        result = merge_tree(staging, target, kept)
        assert result.kept_aside == [Path(odd, "f")]
        assert (target / odd / "f").read_bytes() == b"restored"
        assert (kept / odd / "f").read_bytes() == b"local"
        assert os.fsencode(odd) in os.listdir(os.fsencode(target))


def test_local_symlink_to_a_directory_is_kept_aside_not_followed():
    with workspace() as (base, target, staging, kept):
        outside = base / "outside"
        (target / "Documents").symlink_to(outside)
        (target / "deep").mkdir()
        (target / "deep" / "link").symlink_to(outside)
        write(staging / "Documents" / "sentinel", b"restored over the sentinel?")
        write(staging / "deep" / "link" / "x" / "y", b"restored")
        before = snapshot(outside)
        result = merge_tree(staging, target, kept)
        assert_same_tree(before, snapshot(outside))
        assert sorted(result.kept_aside) == [Path("Documents"), Path("deep/link")]
        assert (target / "Documents").is_dir() and not (target / "Documents").is_symlink()
        assert (target / "deep/link/x/y").read_bytes() == b"restored"
        assert os.readlink(kept / "Documents") == str(outside)


def test_local_symlink_to_a_file_is_not_read_through():
    with workspace() as (base, target, staging, kept):
        (target / "notes").symlink_to(base / "outside" / "sentinel")
        write(staging / "notes", b"outside the target", mode=0o644)
        result = merge_tree(staging, target, kept)
        assert result.kept_aside == [Path("notes")]
        assert (kept / "notes").is_symlink()


def test_protected_path_behind_a_local_symlink_keeps_its_way():
    with workspace() as (base, target, staging, kept):
        write(target / "dotfiles/config/homesync/key", b"local key")
        (target / ".config").symlink_to("dotfiles/config")
        write(staging / ".config/homesync/key", b"old key")
        write(staging / ".config/app.conf", b"app")
        before = snapshot(target / "dotfiles")
        result = merge_tree(staging, target, kept, [target / ".config/homesync"])
        assert result.protected_skipped == [Path(".config")]
        assert os.readlink(target / ".config") == "dotfiles/config"
        assert_same_tree(before, snapshot(target / "dotfiles"))


def test_identical_file_is_skipped_in_place():
    with workspace() as (base, target, staging, kept):
        local = write(target / ".bashrc", b"same", 0o644)
        write(staging / ".bashrc", b"same", 0o644)
        inode = local.stat().st_ino
        result = merge_tree(staging, target, kept)
        assert (result.skipped_identical, result.restored, result.kept_aside) == (1, 0, [])
        assert local.stat().st_ino == inode


def test_same_content_different_mode_is_kept_aside():
    with workspace() as (base, target, staging, kept):
        write(target / "run.sh", b"#!/bin/sh\n", 0o644)
        write(staging / "run.sh", b"#!/bin/sh\n", 0o755)
        result = merge_tree(staging, target, kept)
        assert result.kept_aside == [Path("run.sh")]
        assert stat.S_IMODE((target / "run.sh").stat().st_mode) == 0o755


def test_hard_links_arrive_together_even_when_one_name_exists_locally():
    with workspace() as (base, target, staging, kept):
        write(target / "a", b"shared")
        write(staging / "a", b"shared")
        (staging / "sub").mkdir()
        os.link(staging / "a", staging / "sub" / "b")
        result = merge_tree(staging, target, kept)
        assert result.kept_aside == [Path("a")]
        assert (target / "a").stat().st_ino == (target / "sub" / "b").stat().st_ino
        assert result.bytes_restored == len(b"shared")


def test_hard_linked_local_files_split_in_the_archive_are_not_left_linked():
    with workspace() as (base, target, staging, kept):
        write(target / "a", b"same")
        os.link(target / "a", target / "b")
        write(staging / "a", b"same")
        write(staging / "b", b"same")
        merge_tree(staging, target, kept)
        assert (target / "a").stat().st_ino != (target / "b").stat().st_ino
        assert (kept / "a").stat().st_ino == (kept / "b").stat().st_ino


def test_directory_mtimes_are_restored_after_entries_move_in():
    with workspace() as (base, target, staging, kept):
        write(target / "Documents/local.txt")
        write(staging / "Documents/new.txt")
        os.utime(staging / "Documents", ns=(1, 1_234_567_890_123_456_789))
        os.chmod(staging / "Documents", 0o700)
        merge_tree(staging, target, kept)
        st_ = os.lstat(target / "Documents")
        assert (st_.st_mtime_ns, stat.S_IMODE(st_.st_mode)) == (1_234_567_890_123_456_789, 0o700)
        assert (target / "Documents/local.txt").exists()


def test_staging_outside_the_target_works_and_root_metadata_is_optional():
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        staging, target = base / "staging", base / "target"
        target.mkdir()
        os.chmod(target, 0o755)
        write(staging / "x", b"x")
        os.chmod(staging, 0o700)
        merge_tree(staging, target, base / "kept")
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
        assert not staging.exists() and (target / "x").exists()


def test_existing_kept_aside_destination_is_refused():
    with workspace() as (base, target, staging, kept):
        write(target / "f", b"local")
        write(staging / "f", b"restored")
        write(kept / "f", b"from an earlier restore")
        with pytest.raises(RestoreError):
            merge_tree(staging, target, kept)
        assert (target / "f").read_bytes() == b"local"
        assert (kept / "f").read_bytes() == b"from an earlier restore"


def test_archive_entry_named_like_the_staging_directory_is_dropped():
    with workspace() as (base, target, staging, kept):
        write(staging / STAGING / "x", b"restored copy of an old staging dir")
        write(staging / "y", b"y")
        result = merge_tree(staging, target, kept)
        assert result.protected_skipped == [Path(STAGING)]
        assert not staging.exists() and (target / "y").exists()


def test_missing_staging_is_a_restore_error():
    with workspace() as (base, target, staging, kept):
        with pytest.raises(RestoreError):
            scan_plan(staging, target)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unprivileged_merge_handles_read_only_directories():
    """As a plain user, directories restored or kept with mode 0555 still move."""
    base = Path(tempfile.mkdtemp(prefix="homesync-merge-"))
    try:
        os.chown(base, 65534, 65534)
        pid = os.fork()
        if pid == 0:  # child: become nobody, build, merge, report through the exit code
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                code = _merge_as_user(base)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "merge as an unprivileged user failed (see child output)"
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
        shutil.rmtree(base)


def _merge_as_user(base: Path) -> int:
    target, outside = base / "target", base / "outside"
    staging, kept = target / STAGING, target / KEPT
    spec = DirNode({
        b"ro": DirNode({b"f": FileNode(b"restored", 0o444, 10**18)}, 0o555, 2 * 10**18),
        b"locked": DirNode({b"g": FileNode(b"new", 0o644, 10**18)}, 0o555, 3 * 10**18),
        b"was-dir": FileNode(b"file now", 0o644, 10**18),
        b"link": SymlinkNode(b"target", 10**18),
    }, 0o755, 4 * 10**18)
    target.mkdir()
    outside.mkdir()
    write(target / "locked/local-only", b"mine")
    os.chmod(target / "locked", 0o555)
    write(target / "was-dir/inner", b"local dir")
    os.chmod(target / "was-dir", 0o555)
    build_tree(staging, TreeSpec(spec))
    expected = snapshot(staging)
    result = merge_tree(staging, target, kept, restore_root_metadata=True)
    problems = diff_snapshots(expected, snapshot(target, exclude=[KEPT, "locked/local-only"]))
    if result.kept_aside != [Path("was-dir")] or (kept / "was-dir/inner").read_bytes() != b"local dir":
        problems.append(f"unexpected result {result}")
    if (target / "locked/local-only").read_bytes() != b"mine":
        problems.append("local-only file lost")
    print("\n".join(problems))
    return 1 if problems else 0


def test_generated_home_merges_over_a_fresh_account():
    """The demo's path: a generated home restored over a new account's skeleton files."""
    with workspace() as (base, target, staging, kept):
        stats = make_home(staging, seed=3, files=80, total_bytes=2 << 20)
        make_home(base / "again", seed=3, files=80, total_bytes=2 << 20)
        archived = snapshot(staging)
        assert_same_tree(archived, snapshot(base / "again"))
        assert stats.files == sum(1 for e in archived.values() if e["kind"] == "file") - 1  # one hard link
        (target / ".bashrc").write_bytes((staging / ".bashrc").read_bytes())
        os.chmod(target / ".bashrc", stat.S_IMODE((staging / ".bashrc").stat().st_mode))
        write(target / ".profile", b"# skeleton profile\n")
        write(target / "local only.txt", b"made on the new computer")

        result = merge_tree(staging, target, kept, restore_root_metadata=True)

        assert (result.skipped_identical, result.kept_aside) == (1, [Path(".profile")])
        assert_same_tree(restrict(archived, lambda p: p not in (b".", b".bashrc")),
                         snapshot(target, exclude=[KEPT, "local only.txt", ".bashrc"]), ignore_root=True)
        assert (kept / ".profile").read_bytes() == b"# skeleton profile\n"
        description = mutate_home(target, seed=1)
        assert "modified" in description and "renamed" in description


@pytest.mark.parametrize("loosen_root, expected", [(True, 0o755), (False, 0o700)])
def test_a_template_never_opens_the_target_root(tmp_path, loosen_root, expected):
    target, staging = tmp_path / "home", tmp_path / "home" / ".staging"
    target.mkdir()
    staging.mkdir()
    (staging / "welcome.txt").write_text("welcome")
    os.chmod(staging, 0o755)
    os.chmod(target, 0o700)
    merge_tree(staging, target, tmp_path / "home" / "kept", restore_root_metadata=True, loosen_root=loosen_root)
    assert stat.S_IMODE(os.stat(target).st_mode) == expected
    assert (target / "welcome.txt").read_text() == "welcome"
