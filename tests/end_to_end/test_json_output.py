"""Machine-readable output stays valid: `--json` is UTF-8 even when a name is not, and
the name's bytes come back losslessly (each undecodable byte as the escape \\udcNN)."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support.homesync_server import PASSWORDS
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, user_env

NAME = b"caf\xe9 \xff.txt"  # Latin-1, not UTF-8


def _homesync_bytes(computer, *args: str, input: str) -> subprocess.CompletedProcess:
    """Run the CLI as the computer's user and return its output as bytes, undecoded."""
    demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run([str(VENV_BIN / "homesync"), *args], input=input.encode(), capture_output=True,
                          timeout=300, env=user_env(computer.home), cwd=str(computer.home), **demote)


def test_restore_json_names_a_kept_aside_file_that_is_not_utf8_losslessly(homesync_server, computer_factory):
    laptop = computer_factory()
    with open(os.path.join(os.fsencode(laptop.home), NAME), "wb") as f:
        f.write(b"backed up")
    laptop.enroll_and_back_up(homesync_server, "joe", "Latin-1 laptop")
    new = computer_factory()
    with open(os.path.join(os.fsencode(new.home), NAME), "wb") as f:
        f.write(b"local, different")
    chown_tree(new.home)
    done = _homesync_bytes(new, "restore", "--machine", "Latin-1 laptop", *new.remote_args(homesync_server, "joe"),
                           "--json", input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result = json.loads(done.stdout.decode("utf-8"))  # strict: a raw byte 0xE9 would fail here
    kept = [os.fsencode(p) for p in result["kept_aside"]]
    assert kept == [NAME]
    with open(os.path.join(os.fsencode(result["kept_dir"]), kept[0]), "rb") as f:
        assert f.read() == b"local, different"
    with open(os.path.join(os.fsencode(new.home), NAME), "rb") as f:
        assert f.read() == b"backed up"
