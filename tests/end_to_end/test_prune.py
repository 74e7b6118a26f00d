"""Server-side retention end to end: prune keeps exactly what the policy says, never
touches a held archive (nor any archive of a machine held as a whole), compacts, and
updates the index; a backup that rewrote a home
(as ransomware would) flags the machine and freezes its pruning until released."""

from __future__ import annotations

import json
import os
import random

from tests.support.homesync_server import RunningServer
from tests.support.processes import chown_tree
from tests.support.repositories import archive_names, enrolled_with_backups, metadata, server_borg

POLICY = """
[retention]
keep_hourly = 0
keep_daily = 2
keep_weekly = 0
keep_monthly = 2
"""
ONE_A_DAY = "[retention]\nkeep_hourly = 0\nkeep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0\n"
# Older archives made server-side with --timestamp (UTC). With daily 2 and monthly 2 and
# the agent's archive of today, the policy keeps today's, mar-16 (daily), feb-25 and
# jan-20 (monthly), and deletes jan-10, feb-05 and mar-15.
OLDER = {"jan-10": "2026-01-10T12:00:00", "jan-20": "2026-01-20T12:00:00", "feb-05": "2026-02-05T12:00:00",
         "feb-25": "2026-02-25T12:00:00", "mar-15": "2026-03-15T12:00:00", "mar-16": "2026-03-16T12:00:00"}


def set_policy(server: RunningServer, text: str = POLICY) -> None:
    config = server.data / "server.toml"
    before = config.read_text()
    config.write_text(before[:before.index("[retention]")] + text if "[retention]" in before else before + text)


def test_prune_keeps_what_the_policy_says_and_never_a_held_archive(homesync_server, computer_factory):
    machine_id, _, (report,) = enrolled_with_backups(homesync_server, computer_factory, "joe", "Joe's Prune", 31)
    source = homesync_server.data.parent / "src"
    source.mkdir(exist_ok=True)
    (source / "f").write_bytes(os.urandom(4096))
    chown_tree(source)
    for name, when in OLDER.items():
        server_borg(homesync_server, machine_id, "create", "--timestamp", when, f"{{repo}}::{name}", "src")
    set_policy(homesync_server)
    held = homesync_server.cli("hold", "add", "--machine", machine_id, "--archive", "feb-05", "--reason", "case 7")
    assert held.returncode == 0, held.stderr

    (dry,) = homesync_server.cli_json("prune", "--machine", machine_id, "--dry-run")
    assert dry["result"] == "dry run" and dry["deleted"] == ["jan-10", "mar-15"]
    assert archive_names(homesync_server, machine_id) == set(OLDER) | {report["name"]}

    (done,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert done["result"] == "pruned" and done["deleted"] == ["jan-10", "mar-15"]
    assert done["kept"] == {report["name"]: "daily #1", "mar-16": "daily #2", "feb-25": "monthly #1",
                            "jan-20": "monthly #2", "feb-05": "held"}
    assert archive_names(homesync_server, machine_id) == {report["name"], "mar-16", "feb-25", "jan-20", "feb-05"}
    (again,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert again["result"] == "nothing to prune"

    events = homesync_server.index_rows(f"SELECT action, detail FROM audit WHERE machine_id = '{machine_id}'")
    assert ("passphrase_release", '{"to": "prune"}') in events
    assert [json.loads(d)["deleted"] for a, d in events if a == "prune"] == [["jan-10", "mar-15"]]
    assert homesync_server.index_rows(f"SELECT name FROM archives WHERE machine_id = '{machine_id}'") == \
        [(report["name"],)]
    assert [h["archive"] for h in metadata(homesync_server, machine_id)["holds"]] == ["feb-05"]
    check = server_borg(homesync_server, machine_id, "check", "{repo}")
    assert check.returncode == 0

    # a hold on all of the machine's archives stops its pruning; lifting every hold resumes it
    assert homesync_server.cli("hold", "add", "--machine", machine_id, "--all").returncode == 0
    set_policy(homesync_server, ONE_A_DAY)
    (held,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert held["result"] == "held" and len(archive_names(homesync_server, machine_id)) == 5
    assert homesync_server.cli_json("hold", "remove", "--machine", machine_id, "--all")["removed"] == 2
    (pruned,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert pruned["deleted"] == ["jan-20", "feb-05", "feb-25", "mar-16"]
    assert archive_names(homesync_server, machine_id) == {report["name"]}
    assert homesync_server.cli("hold", "remove", "--machine", machine_id, "--all").returncode == 10


def encrypt_everything(home) -> None:
    """Overwrite every backed-up file with random bytes of the same size, as ransomware would."""
    rng = random.Random(5)
    for dirpath, _, filenames in os.walk(home):
        if "/." in dirpath.removeprefix(str(home)):
            continue
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not name.startswith(".") and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "r+b") as f:
                    f.write(rng.randbytes(os.path.getsize(path)))


def test_a_mass_change_freezes_pruning_until_released(homesync_server, computer_factory):
    machine_id, laptop, _ = enrolled_with_backups(homesync_server, computer_factory, "joe", "Joe's Ransom", 33,
                                                  backups=2)
    encrypt_everything(laptop.home)
    chown_tree(laptop.home)
    encrypted = laptop.json("backup")
    set_policy(homesync_server, ONE_A_DAY)

    (frozen,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert frozen["result"] == "frozen" and frozen["deleted"] == []
    assert f"machine release --machine {machine_id}" in frozen["reason"]
    assert len(archive_names(homesync_server, machine_id)) == 3
    (flag,) = [f for f in homesync_server.cli_json("prune", "--dry-run") if f["machine_id"] == machine_id]
    assert flag["result"] == "frozen"
    rows = homesync_server.index_rows(
        f"SELECT archive, share > 0.9, released_at FROM mass_change WHERE machine_id = '{machine_id}'")
    assert rows == [(encrypted["name"], 1, None)]
    assert metadata(homesync_server, machine_id)["mass_change"]["archive"] == encrypted["name"]
    assert homesync_server.index_rows(
        f"SELECT COUNT(*) FROM audit WHERE action = 'mass_change' AND machine_id = '{machine_id}'") == [(1,)]

    released = homesync_server.cli("machine", "release", "--machine", machine_id)
    assert released.returncode == 0, released.stderr
    (pruned,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert pruned["result"] == "pruned" and archive_names(homesync_server, machine_id) == {encrypted["name"]}
    assert homesync_server.cli("machine", "release", "--machine", machine_id).returncode == 10
