"""Real borg, run as an unprivileged user: the warnings of a restored file whose extended
attribute it may not set (trusted.*, root's alone; user.* on a file borg made read-only)
name the file by descriptor only; extraction.described says them in words, the file
named where the listing tells which."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from homesync import borg, extraction
from tests.support.processes import UNPRIVILEGED, chown_tree, private_dir, remove, user_env

BORG = Path(sys.executable).parent / "borg"
pytestmark = [pytest.mark.skipif(not BORG.exists(), reason="borg is not installed in this environment"),
              pytest.mark.skipif(os.geteuid() != 0, reason="sets a trusted.* attribute, which needs root")]

EXTRACT = """
import json, sys
from homesync import borg
environment = borg.BorgEnvironment(base_dir=sys.argv[2], extra={"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                                                             "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"})
done = borg.run_borg(borg.make_extract_command(sys.argv[1], "a1", progress=False), environment)
print(json.dumps(done.warnings))
"""


@pytest.fixture
def work() -> Iterator[Path]:
    path = private_dir("hs-xattr-")
    yield path
    remove(path)


def test_an_attribute_it_may_not_set_is_a_warning_in_words_naming_the_file_where_known(work):
    tmp_path = work
    source, out = tmp_path / "home", tmp_path / "out"
    (source / "Documents").mkdir(parents=True)
    (source / "Documents/marked.txt").write_text("kept")
    os.setxattr(source / "Documents/marked.txt", "trusted.homesync-test", b"1")
    (source / "Documents/locked.pdf").write_bytes(b"%PDF")
    os.setxattr(source / "Documents/locked.pdf", "user.origin", b"https://example.org/a.pdf")
    os.chmod(source / "Documents/locked.pdf", 0o444)
    repo = tmp_path / "repo"
    env = borg.BorgEnvironment(base_dir=tmp_path / "root-borg").build()
    subprocess.run([str(BORG), "init", "--encryption=none", str(repo)], env=env, check=True, capture_output=True)
    subprocess.run([str(BORG), "create", f"{repo}::a1", "."], env=env, cwd=source, check=True, capture_output=True)
    out.mkdir()
    chown_tree(tmp_path)
    done = subprocess.run([sys.executable, "-c", EXTRACT, str(repo), str(tmp_path / "user-borg")], cwd=out,
                          user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[], capture_output=True, text=True,
                          env=user_env(tmp_path),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)
    assert len(warnings) == 2 and all("<FD " in w for w in warnings), warnings
    not_permitted, denied = sorted(warnings, key=lambda w: "Errno 13" in w)
    assert extraction.described(not_permitted, ["Documents/locked.pdf"]) == (
        "a restored file's extended attribute trusted.homesync-test could not be set: [Errno 1] Operation not permitted")
    assert extraction.described(denied, ["Documents/locked.pdf"]) == (
        "Documents/locked.pdf: extended attribute user.origin could not be set, the file being read-only: "
        "[Errno 13] Permission denied")
    assert extraction.described(denied, [f"r{i}" for i in range(5)]).startswith(
        "one of the read-only r0, r1, r2 and 2 more: extended attribute user.origin could not be set")
    assert extraction.described("some other warning", ["x"]) == "some other warning"
    assert (out / "Documents/marked.txt").read_text() == "kept"
