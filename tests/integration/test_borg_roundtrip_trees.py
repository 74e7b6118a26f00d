"""Real borg round trip of awkward trees: borg create (cwd = tree root, path "."),
borg extract into a staging directory inside the target, merge_tree, bit-for-bit compare.
"""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from homesync.merge import merge_tree
from tests.support.trees import assert_same_tree, build_tree, kitchen_sink, snapshot, tree_specs

BORG = Path(sys.executable).parent / "borg"
_archives = itertools.count()

pytestmark = pytest.mark.skipif(not BORG.exists(), reason="borg is not installed in this environment")


def borg(env: dict, *args: str, cwd: Path | None = None) -> str:
    """Run borg; return its standard output. Fail the test on any non-zero exit."""
    done = subprocess.run([str(BORG), *args], cwd=cwd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, f"borg {args[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
    return done.stdout.decode("utf-8", "surrogateescape")


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> tuple[dict, Path]:
    base = tmp_path_factory.mktemp("borg")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BORG_BASE_DIR": str(base / "home"),
           "BORG_EXIT_CODES": "modern", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
           "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "LANG": "C.UTF-8"}
    repo = base / "repo"
    borg(env, "init", "--encryption=none", str(repo))
    return env, repo


# No shrinking: every step runs borg three times, and hypothesis would spend minutes.
@settings(max_examples=5, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=tree_specs())
@example(spec=kitchen_sink())
def test_tree_survives_borg_create_extract_and_merge(repository, spec):
    env, repo = repository
    archive = f"{repo}::tree-{next(_archives)}"
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "source", Path(tmp) / "target"
        staging = target / ".homesync-restore-test"
        build_tree(source, spec)
        original = snapshot(source)
        borg(env, "create", archive, ".", cwd=source)
        listed = borg(env, "list", "--format", "{path}{NUL}", archive).split("\0")[:-1]
        assert listed[0] == "." and not any(p.startswith(("./", "/")) for p in listed)
        staging.mkdir(parents=True)
        borg(env, "extract", archive, cwd=staging)

        merge_tree(staging, target, target / ".homesync-kept-test", restore_root_metadata=True)

        # borg applies the root's mode to the extraction directory, not its mtime.
        assert_same_tree(original, snapshot(target), ignore_root=True)
        assert stat.S_IMODE(target.stat().st_mode) == int(original[b"."]["mode"], 8)
