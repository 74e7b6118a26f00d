"""After every agent session the server checks the repository against the index (issue
11 items 2 and 3, issue 18): archives claiming a time outside the session are flagged
and never counted (prune, drills, reports); history removed or rewritten in the
repository between two sessions is rolled back after the next one and the machine frozen
(done on the repository itself, so the test holds whatever the RPC filter of the first
layer refuses); an archive the CLI never reported is indexed from the repository, and a
report arriving later merges with it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone

from homesync import borg, names
from homesync_server.escrow import EscrowKey
from homesync_server.repos import SEALED_PASSPHRASE
from tests.end_to_end.test_prune import set_policy
from tests.support.homesync_client import Computer
from tests.support.homesync_server import RunningServer
from tests.support.processes import VENV_BIN, chown_tree, run_as_user
from tests.support.repositories import archive_names, enrolled_with_backups, repo_path, server_borg

# Two genuine backups a few seconds apart share every period; keep_hourly = 2 keeps both
# (the newest, and the oldest as "#2"), unless other archives take the two hours.
TWO_HOURS = "[retention]\nkeep_hourly = 2\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"
# borg run as the computer's user through homesync's shim with the machine key; an
# attacker holding the key uses borg directories of their own.
AGENT_BORG = """
import subprocess, sys
from homesync import borg, config, link
paths = config.Paths.from_environment()
access = link.machine_repository(config.load(paths), paths)
env = access.environment().build()
env["BORG_PASSPHRASE"] = paths.passphrase_file.read_bytes().decode()
env.update(a[4:].split("=", 1) for a in sys.argv[1:] if a.startswith("ENV:"))
argv = [borg.borg_executable()] + [a.replace("{repo}", access.location) for a in sys.argv[1:]
                                   if not a.startswith("ENV:")]
sys.exit(subprocess.run(argv, env=env).returncode)
"""


def agent_borg(laptop: Computer, *args: str, attacker: str = "", **env: str) -> subprocess.CompletedProcess:
    """Run borg ARGS as the laptop's user with its machine key ('{repo}': its repository),
    with the laptop's borg directories or (attacker) fresh ones of that name."""
    if attacker:
        place = laptop.home / f".attacker-{attacker}"
        env.update(BORG_CONFIG_DIR=str(place / "config"), BORG_SECURITY_DIR=str(place / "config/security"),
                   BORG_KEYS_DIR=str(place / "config/keys"), BORG_CACHE_DIR=str(place / "cache"))
    return run_as_user([str(VENV_BIN / "python"), "-c", AGENT_BORG, *args, *(f"ENV:{k}={v}" for k, v in env.items())],
                       laptop.home, uid=laptop.uid)


def wait_for(condition, timeout: float = 90.0):
    """Return condition()'s first true value, or its last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def checked(server: RunningServer, machine_id: str) -> bool:
    """Return whether no post-session check of the machine is pending (false before the fix)."""
    try:
        rows = server.index_rows(f"SELECT pending_since FROM history WHERE machine_id = '{machine_id}'")
    except Exception:
        return False
    return bool(rows) and rows[0][0] is None


def tiny_source(laptop: Computer):
    source = laptop.home / "tiny"
    source.mkdir(exist_ok=True)
    (source / "x").write_bytes(b"x")
    chown_tree(laptop.home)
    return source


# More future-dated archives than keep_hourly keeps, each in an hour of its own: counted,
# they alone would fill every slot and prune both genuine archives. (Each one is an agent
# session with its own post-session check: a few seconds apiece.)
FAKES = 3


def test_future_dated_archives_are_flagged_and_never_prune_the_real_ones(homesync_server, computer_factory):
    machine_id, laptop, reports = enrolled_with_backups(homesync_server, computer_factory, "joe", "Joe's Future",
                                                        41, backups=2)
    genuine = {r["name"] for r in reports}
    tiny_source(laptop)
    for i in range(FAKES):
        made = agent_borg(laptop, "create", "--timestamp", f"2031-0{1 + i % 9}-{10 + i}T12:00:00",
                          f"{{repo}}::fake-{i:02}", "tiny")
        assert made.returncode == 0, made.stderr
    wait_for(lambda: checked(homesync_server, machine_id), timeout=30)
    set_policy(homesync_server, TWO_HOURS)

    (done,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert genuine <= set(done["kept"]) and not genuine & set(done["deleted"]), done
    assert genuine <= archive_names(homesync_server, machine_id)
    assert sorted(done["flagged"]) == [f"fake-{i:02}" for i in range(FAKES)]

    (row,) = [m for m in homesync_server.cli_json("machines") if m["id"] == machine_id]
    assert row["flagged_archives"] == FAKES and row["archives"] == 2
    assert row["last_backup"] <= time.time()
    flags = homesync_server.index_rows(f"SELECT name, flag FROM archives WHERE machine_id = '{machine_id}' "
                                       "AND flag != '' ORDER BY name")
    assert [n for n, _ in flags] == [f"fake-{i:02}" for i in range(FAKES)]
    assert all("outside the session" in f for _, f in flags)

    (drill,) = homesync_server.cli_json("drill", "--machine", machine_id)
    assert drill["archive"] in genuine and drill["archive"] == max(genuine)
    assert drill["rpo_seconds"] >= 0
    preview = laptop.json("restore", "--machine", "Joe's Future", "--dry-run", "--target", str(laptop.home / "preview"))
    assert preview["archive"] == max(genuine), "latest: the newest genuine backup, never a future-dated one"
    report = json.loads(homesync_server.cli("report", "--format", "json").stdout)
    (fleet_row,) = [m for m in report["machines"] if m["machine_id"] == machine_id]
    assert fleet_row["last_backup"] <= time.time() and fleet_row["archives"] == 2


def attacker_borg(server: RunningServer, machine_id: str, attacker: str, *args: str, **env: str):
    """Run borg ARGS right on the machine's repository with its escrowed passphrase, as the
    server's user, from borg directories of the attacker's own: what a machine key could
    do through an append-only `borg serve` that let every call through."""
    passphrase = EscrowKey.load(server.data / "escrow.key").unseal(
        (repo_path(server, machine_id) / SEALED_PASSPHRASE).read_bytes(), machine_id)
    argv = [borg.borg_executable(), *(a.replace("{repo}", str(repo_path(server, machine_id))) for a in args)]
    done = run_as_user(argv, server.data.parent, BORG_PASSPHRASE=passphrase.decode(), TZ="UTC",
                       BORG_BASE_DIR=str(server.data.parent / f"attacker-{attacker}"), **env)
    assert done.returncode == 0, done.stderr


def next_session(laptop: Computer, name: str) -> None:
    """Open an agent session with the machine key (a listing, from borg directories of its own)."""
    # whatever borg makes of the repository (a new key refuses the old passphrase), the session ran
    agent_borg(laptop, "list", "{repo}", attacker=name)


def test_history_removed_behind_the_index_is_rolled_back_and_frozen(homesync_server, computer_factory):
    machine_id, laptop, reports = enrolled_with_backups(homesync_server, computer_factory, "ann", "Ann's History",
                                                        42, backups=2)
    first, second = (r["name"] for r in reports)
    wait_for(lambda: checked(homesync_server, machine_id), timeout=30)
    rollbacks = f"SELECT detail FROM audit WHERE action = 'history_rollback' AND machine_id = '{machine_id}'"

    # between two sessions an archive is deleted; the next agent session triggers the check
    # (waiting on the index, not on borg: a borg that saw the rewritten manifest would
    # rightly take the rollback for a replay attack)
    attacker_borg(homesync_server, machine_id, "one", "delete", f"{{repo}}::{first}")
    next_session(laptop, "one")
    events = wait_for(lambda: homesync_server.index_rows(rollbacks), timeout=30)
    assert archive_names(homesync_server, machine_id) == {first, second}
    assert len(events) == 1 and first in json.loads(events[0][0])["missing"]

    # ... then the repository's passphrase is changed (the escrowed one would no longer open it)
    attacker_borg(homesync_server, machine_id, "two", "key", "change-passphrase", "{repo}",
                  BORG_NEW_PASSPHRASE="ransom-" * 6)
    next_session(laptop, "two")
    assert wait_for(lambda: len(homesync_server.index_rows(rollbacks)) == 2, timeout=30)
    assert archive_names(homesync_server, machine_id) == {first, second}  # the escrowed passphrase opens it
    assert server_borg(homesync_server, machine_id, "check", "{repo}").returncode == 0

    (row,) = [m for m in homesync_server.cli_json("machines") if m["id"] == machine_id]
    assert row["history_frozen"]
    (pruned,) = homesync_server.cli_json("prune", "--machine", machine_id)
    assert pruned["result"] == "frozen" and "history" in pruned["reason"]
    table = homesync_server.cli("report").stdout
    assert "rolled back" in table and "Ann's History" in table

    # the real computer goes on backing up; an admin releases the freeze
    assert laptop.json("backup")["indexed"]
    released = homesync_server.cli("machine", "release", "--machine", machine_id)
    assert released.returncode == 0, released.stderr
    assert wait_for(lambda: checked(homesync_server, machine_id))
    (pruned,) = homesync_server.cli_json("prune", "--machine", machine_id, "--dry-run")
    assert pruned["result"] == "dry run"


def test_an_archive_the_cli_never_reported_is_indexed_and_a_late_report_merges(homesync_server,
                                                                                computer_factory):
    machine_id, laptop, _ = enrolled_with_backups(homesync_server, computer_factory, "joe", "Joe's Lost", 43)
    tiny_source(laptop)
    before = time.time()
    lost = names.archive_name(datetime.now(timezone.utc))
    made = agent_borg(laptop, "create", f"{{repo}}::{lost}", "tiny")  # borg finished; the CLI died before reporting
    assert made.returncode == 0, made.stderr
    after = time.time()
    query = f"SELECT name, files, observed, result FROM archives WHERE machine_id = '{machine_id}' AND name = '{lost}'"
    known = f"SELECT 1 FROM archives WHERE machine_id = '{machine_id}' AND name = '{lost}'"
    assert wait_for(lambda: homesync_server.index_rows(known), timeout=30), "the unreported archive is not indexed"
    rows = homesync_server.index_rows(query)
    (name, files, observed, result), = rows
    assert result == "success" and files == 1 and before - 1 <= observed <= after + 30

    # the report queued by the CLI arrives with the next backup: merged, not refused or doubled
    late = {"name": lost, "start": before, "end": after, "files": 1, "original_size": 1, "compressed_size": 1,
            "deduplicated_size": 1, "result": "warning", "error": "a file changed while read"}
    state = laptop.home / ".local/state/homesync"
    (state / "unreported.json").write_text(json.dumps([late]))
    chown_tree(laptop.home)
    assert laptop.json("backup")["indexed"]
    assert not (state / "unreported.json").read_text().strip("[] \n")
    assert homesync_server.index_rows(query) == [(lost, 1, observed, "warning")]
    assert os.path.exists(homesync_server.data / "index.sqlite")


def test_both_layers_together_a_manifest_only_rewrite_through_the_filter_is_rolled_back(homesync_server,
                                                                                         computer_factory):
    # `borg delete --force --force` and `borg rename` only rewrite the manifest, which an
    # agent must be able to write: the RPC filter lets them through, the check after the
    # session puts the history back.
    machine_id, laptop, reports = enrolled_with_backups(homesync_server, computer_factory, "joe", "Joe's Layers",
                                                        44, backups=2)
    first, second = (r["name"] for r in reports)
    wait_for(lambda: checked(homesync_server, machine_id), timeout=30)
    rollbacks = f"SELECT COUNT(*) FROM audit WHERE action = 'history_rollback' AND machine_id = '{machine_id}'"
    attacks = [("delete", "--force", "--force", f"{{repo}}::{first}"), ("rename", f"{{repo}}::{second}", "gone")]
    expected = 0
    for number, attack in enumerate(attacks, start=1):
        done = agent_borg(laptop, *attack, attacker=f"layers-{number}")
        if done.returncode == 0:  # through the filter: the check must undo it
            expected += 1
            assert wait_for(lambda: homesync_server.index_rows(rollbacks)[0][0] >= expected, timeout=60), attack
        else:
            assert "homesync refused" in done.stderr, done.stderr
        wait_for(lambda: checked(homesync_server, machine_id), timeout=60)
        assert archive_names(homesync_server, machine_id) == {first, second}, attack
    assert server_borg(homesync_server, machine_id, "check", "{repo}").returncode == 0
