"""Drills of hostile archives, end to end on the real server: an archive built to make
borg extract write through a symlink into the data directory is refused before
anything is extracted, loudly; an archive far bigger than the agent (or the archive's
own listing) claims is stopped within the drill's scratch budget."""

from __future__ import annotations

import json
import tarfile

import pytest

from homesync import borg
from homesync_server import config as server_config, sandbox
from homesync_server.config import Layout
from homesync_server.escrow import EscrowKey
from homesync_server.repos import SEALED_PASSPHRASE
from tests.support.crafted_archives import append_archive, member
from tests.support.processes import chown_tree, private_dir, remove, run_as_user
from tests.support.repositories import enrolled_with_backups, index_write


def drill(server, machine_id: str):
    done = server.cli("drill", "--machine", machine_id, "--json")
    return done, (json.loads(done.stdout) if done.stdout.strip() else None)


def scratch_of(server):
    return server_config.load(Layout(server.data)).drill.scratch


@pytest.fixture
def work():
    path = private_dir("hs-crafted-")
    yield path
    remove(path)


def _set_drill_config(server, text: str) -> None:
    config = server.data / "server.toml"
    config.write_text(config.read_text() + "\n[drill]\n" + text + "\n")


def test_an_archive_that_writes_through_a_symlink_is_refused_loudly(fresh_server, computer_factory, work):
    machine_id, _, _ = enrolled_with_backups(fresh_server, computer_factory, "joe", "Joe's Hostile", 31)
    users = fresh_server.data / "users.json"
    before = users.read_bytes()
    payload = b'{"joe": {"hash": "attacker", "admin": true}}\n'
    append_archive(fresh_server, machine_id, "evil", [
        member("a", tarfile.DIRTYPE, mode=0o755),
        member("a/b/c", tarfile.CHRTYPE),  # borg makes a/b (now "safe"); mknod fails: a/b stays empty
        member("a/./b", tarfile.SYMTYPE, target="../../.."),
        member("a/b/users.json", tarfile.REGTYPE, data=payload),
        member("a/b/escaped-marker", tarfile.REGTYPE, data=b"escaped\n"),
    ], work)

    done, (result,) = drill(fresh_server, machine_id)

    assert users.read_bytes() == before
    assert not (fresh_server.data / "escaped-marker").exists()
    assert not any(p.name == "escaped-marker" for p in fresh_server.data.parent.rglob("*"))
    assert done.returncode == 21, done.stderr
    assert result["result"] == "failed" and result["archive"] == "evil"
    assert [f["stage"] for f in result["failures"]] == ["safety"]
    assert "a/./b" in result["failures"][0]["message"] and result["extract_seconds"] is None
    assert "safety:" in done.stderr and "ERROR" in done.stderr
    events = fresh_server.index_rows(f"SELECT action, detail FROM audit WHERE machine_id = '{machine_id}'")
    escapes = [json.loads(d) for a, d in events if a == "drill_escape_attempt"]
    assert escapes and escapes[0]["archive"] == "evil" and "a/./b" in " ".join(escapes[0]["problems"])
    report = fresh_server.cli_json("report")
    assert machine_id in json.dumps(report["drills"])
    assert list(scratch_of(fresh_server).iterdir()) == []


def test_an_archive_bigger_than_the_agent_claims_is_refused_before_extracting(fresh_server, computer_factory):
    machine_id, laptop, (report,) = enrolled_with_backups(fresh_server, computer_factory, "ann", "Ann's Liar", 32)
    _set_drill_config(fresh_server, "max_bytes = 50_000_000")
    with open(laptop.home / "zeros.bin", "wb") as f:
        f.truncate(200 << 20)
    laptop.ok("backup")
    index_write(fresh_server, f"UPDATE archives SET original_size = 1 WHERE machine_id = '{machine_id}'")

    done, (result,) = drill(fresh_server, machine_id)

    assert done.returncode == 21, done.stderr
    assert [f["stage"] for f in result["failures"]] == ["space"], result["failures"]
    message = result["failures"][0]["message"]
    assert "the archive lists" in message and "50.0 MB" in message
    assert result["extract_seconds"] is None
    assert list(scratch_of(fresh_server).iterdir()) == []


def test_an_archive_whose_listing_understates_a_file_is_stopped_within_budget(fresh_server, computer_factory,
                                                                              work):
    machine_id, _, _ = enrolled_with_backups(fresh_server, computer_factory, "joe", "Joe's Understated", 33)
    _set_drill_config(fresh_server, "max_bytes = 100_000_000")
    append_archive(fresh_server, machine_id, "understated", [
        member("big.lie", tarfile.REGTYPE, size=300 << 20),
    ], work)

    done, (result,) = drill(fresh_server, machine_id)

    assert done.returncode == 21, done.stderr
    stages = {f["stage"]: f["message"] for f in result["failures"]}
    assert "extract" in stages and "budget" in stages["extract"], result["failures"]
    assert list(scratch_of(fresh_server).iterdir()) == []


def test_the_sandbox_alone_stops_the_escape(fresh_server, computer_factory, work):
    """Defence in depth: the same archive extracted by the sandboxed borg with no vetting
    before, into a directory inside <data>, still writes nothing outside it."""
    machine_id, _, _ = enrolled_with_backups(fresh_server, computer_factory, "joe", "Joe's Unvetted", 34)
    users = fresh_server.data / "users.json"
    before = users.read_bytes()
    append_archive(fresh_server, machine_id, "evil", [
        member("a", tarfile.DIRTYPE, mode=0o755),
        member("a/b/c", tarfile.CHRTYPE),
        member("a/./b", tarfile.SYMTYPE, target="../../.."),  # from probe/restore/a: <data>
        member("a/b/users.json", tarfile.REGTYPE, data=b"{}\n"),
    ], work)
    probe = fresh_server.data / "probe"
    (probe / "restore").mkdir(parents=True)
    (probe / "borg").mkdir()
    chown_tree(probe)
    repo = fresh_server.data / "repos" / machine_id
    extract = borg.make_extract_command(str(repo), "evil", progress=False, bypass_lock=True)
    argv = sandbox.make_sandboxed_command(extract, [str(probe / "restore"), str(probe / "borg")])
    passphrase = EscrowKey.load(fresh_server.data / "escrow.key").unseal(
        (repo / SEALED_PASSPHRASE).read_bytes(), machine_id)
    done = run_as_user(list(argv), probe / "restore", BORG_PASSPHRASE=passphrase.decode(),
                       BORG_BASE_DIR=str(probe / "borg"), BORG_EXIT_CODES="modern")
    assert "a/b/users.json" in done.stderr and "Permission denied" in done.stderr, done.stderr
    assert users.read_bytes() == before
    assert (probe / "restore" / "a" / "b").is_symlink()  # the trap was laid, and led nowhere
