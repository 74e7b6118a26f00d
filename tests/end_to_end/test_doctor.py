"""`homesync-server doctor` on a data directory made by `init`: healthy, then with each
problem an admin meets seeded in turn (a root-owned file, a mode the server cannot
use, a missing key, a full disk); each is found, named, and comes with a fix."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import VENV_BIN, private_dir, remove, run_as_user, user_env

PROBLEMS_EXIT = 27


@pytest.fixture
def data():
    base = private_dir("hs-doctor-")
    data = base / "data"
    done = run_as_user([str(VENV_BIN / "homesync-server"), "init", "--data", str(data), "--listen",
                        "127.0.0.1:2222"], base)
    assert done.returncode == 0, done.stderr
    yield data
    subprocess.run(["umount", "-l", str(data)], capture_output=True)
    remove(base)


def doctor(data: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run doctor as root (as an admin would); return the process and its problems."""
    done = subprocess.run([str(VENV_BIN / "homesync-server"), "doctor", "--json", "--data", str(data)],
                          capture_output=True, text=True, timeout=120, env=user_env(Path("/root")))
    return done, [f for f in json.loads(done.stdout) if not f["ok"]]


def test_a_fresh_data_directory_is_healthy(data):
    done, problems = doctor(data)
    assert done.returncode == 0 and problems == [], done.stdout
    text = subprocess.run([str(VENV_BIN / "homesync-server"), "doctor", "--data", str(data)],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "borg 1.4." in text.stdout and "ok" in text.stdout


def test_a_root_owned_file_is_named_with_the_chown_that_fixes_it(data):
    stray = data / "repos" / "stray"
    stray.write_text("left by an admin")
    os.chown(stray, 0, 0)
    done, problems = doctor(data)
    assert done.returncode == PROBLEMS_EXIT
    (problem,) = problems
    assert problem["check"] == "ownership" and str(stray) in problem["message"] and "root" in problem["message"]
    assert problem["fix"] == f"chown -R nobody: {data}"
    assert "ownership" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_mode_the_server_cannot_use_and_an_open_key_are_named(data):
    os.chmod(data / "index.sqlite", 0o200)
    os.chmod(data / "escrow.key", 0o644)
    done, problems = doctor(data)
    assert done.returncode == PROBLEMS_EXIT
    messages = {p["check"]: [] for p in problems}
    for p in problems:
        messages[p["check"]].append(p["message"] + " / " + p["fix"])
    assert any("index.sqlite" in m and "u+rwX" in m for m in messages["modes"])
    assert any("escrow.key" in m and "chmod 600" in m for m in messages["modes"])


def test_a_missing_key_is_named(data):
    (data / "escrow.key").unlink()
    done, problems = doctor(data)
    assert done.returncode == PROBLEMS_EXIT
    assert [p["check"] for p in problems] == ["escrow key"] and "escrow.key" in problems[0]["message"]


def test_a_full_disk_is_named(data):
    moved = data.parent / "moved"
    os.rename(data, moved)
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], check=True)
    subprocess.run(["cp", "-a", f"{moved}/.", str(data)], check=True)
    os.chown(data, 65534, 65534)
    os.chmod(data, 0o700)
    with open(data / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    os.chown(data / "filler", 65534, 65534)
    done, problems = doctor(data)
    assert done.returncode == PROBLEMS_EXIT
    assert [p["check"] for p in problems] == ["free space"] and "full" in problems[0]["message"]
