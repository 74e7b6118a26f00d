"""Helpers for the operations tests (drill, prune, reindex, lifecycle): a computer
enrolled with real backups, and the server-side view of its repository (borg run as
the server's user with the escrowed passphrase, the index changed as that user)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from homesync import borg
from homesync_server.escrow import EscrowKey
from homesync_server.repos import METADATA, SEALED_PASSPHRASE
from tests.support.homesync_client import Computer, background_done
from tests.support.homesync_server import RunningServer
from tests.support.processes import VENV_BIN, chown_tree, run_as_user
from tests.support.trees import make_home


def enrolled_with_backups(server: RunningServer, computer_factory, user: str, machine: str, seed: int,
                          backups: int = 1) -> tuple[str, Computer, list[dict]]:
    """Return the machine id of a new computer with a small home, the computer, and its
    backups' reports."""
    laptop = computer_factory()
    make_home(laptop.home, seed=seed, files=150, total_bytes=3 << 20)
    chown_tree(laptop.home)
    enrolled = laptop.enroll(server, user, machine)
    assert enrolled.returncode == 0, enrolled.stderr
    reports = [laptop.json("backup") for _ in range(backups)]
    machine_id = next(m["id"] for m in server.cli_json("machines", "--user", user) if m["name"] == machine)
    background_done(laptop, server)  # the tests change the repository next: after the product is done with it
    return machine_id, laptop, reports


def repo_path(server: RunningServer, machine_id: str) -> Path:
    return server.data / "repos" / machine_id


def corrupt_file_data(server: RunningServer, machine_id: str, length: int) -> Path:
    """Flip length bytes in the middle of the repository's biggest segment, the one
    holding the files' chunks (what a failing disk does); return that segment."""
    segments = repo_path(server, machine_id) / "data" / "0"
    biggest = max(segments.iterdir(), key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:
        f.seek(biggest.stat().st_size // 2)
        chunk = f.read(length)
        f.seek(-len(chunk), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in chunk))
    return biggest


def metadata(server: RunningServer, machine_id: str) -> dict:
    return json.loads((repo_path(server, machine_id) / METADATA).read_text())


def index_write(server: RunningServer, sql: str) -> None:
    """Change the index as the server's user (so no file of it becomes root's)."""
    script = (f"import sqlite3; db = sqlite3.connect({str(server.data / 'index.sqlite')!r}); "
              f"db.execute({sql!r}); db.commit()")
    done = run_as_user([str(VENV_BIN / "python"), "-c", script], server.data.parent)
    assert done.returncode == 0, done.stderr


def server_borg(server: RunningServer, machine_id: str, *args: str):
    """Run borg ARGS on the machine's repository as the server's user, with the escrowed
    passphrase, in the server's home; '{repo}' in args is replaced by the repository path."""
    passphrase = EscrowKey.load(server.data / "escrow.key").unseal(
        (repo_path(server, machine_id) / SEALED_PASSPHRASE).read_bytes(), machine_id)
    argv = [borg.borg_executable(), *(a.replace("{repo}", str(repo_path(server, machine_id))) for a in args)]
    done = run_as_user(argv, server.data.parent, BORG_PASSPHRASE=passphrase.decode(), TZ="UTC",
                       BORG_BASE_DIR=str(server.data.parent / "test-borg"), BORG_EXIT_CODES="modern")
    assert done.returncode == 0, done.stderr
    return done


def archive_names(server: RunningServer, machine_id: str) -> set[str]:
    """Return the names of the archives borg lists in the machine's repository."""
    listed = json.loads(server_borg(server, machine_id, "list", "--json", "{repo}").stdout)
    return {a["name"] for a in listed["archives"]}
