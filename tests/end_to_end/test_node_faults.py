"""Several server nodes (issue 14), on loopback with a real PostgreSQL index and one
shared repository root: heartbeats and `nodes --json`; a node SIGKILLed mid-backup
(the agent's next attempt goes through another node, which breaks the dead node's
borg lock); SIGTERM drains; prune leases (two concurrent prunes never on one
repository at once, a killed node's lease taken over); a live node's lock never broken."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from homesync import __version__, borg
from tests.support.homesync_client import Computer, background_done, wait_for_keeping
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, run_as_user, user_env
from tests.support.repositories import archive_names, server_borg
from tests.support.server_nodes import DEAD_AFTER, HEARTBEAT, LEASE, server_nodes, start_nodes  # noqa: F401

# A policy's server addresses reach the computer as the agent gets them (fleet.fetch), kept
# for the next `homesync backup` (which fails over through them as the agent does).
FETCH_POLICY = ("from homesync.agent import fleet\nfrom homesync.config import Paths\n"
                "paths = Paths.from_environment()\n"
                "fleet.write_cache(paths, fleet.fetch(fleet.load(paths).config, paths, None))\n")
# the retention prune applies: server.toml's defaults changed to these
PRUNE_POLICY = {"keep_hourly = 24": "keep_hourly = 0", "keep_daily = 14": "keep_daily = 2",
                "keep_weekly = 8": "keep_weekly = 0", "keep_monthly = 12": "keep_monthly = 2"}
# Older archives (made server-side with --timestamp): the policy above deletes at least feb-05.
OLDER = {"jan-10": "2026-01-10T12:00:00", "jan-20": "2026-01-20T12:00:00", "feb-05": "2026-02-05T12:00:00",
         "feb-25": "2026-02-25T12:00:00"}


def _wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)
    return value


def _repo(nodes, machine_id: str):
    return nodes[0].data / "repos" / machine_id


def _big_home(computer: Computer, megabytes: int = 64) -> None:
    videos = computer.home / "Videos"
    videos.mkdir()
    for i in range(megabytes // 16):  # random: borg works on it for a second or more
        (videos / f"clip-{i}.raw").write_bytes(os.urandom(16 << 20))
    (computer.home / "notes.txt").write_text("notes\n")
    chown_tree(computer.home)


def _enroll(computer: Computer, nodes, node: int, machine: str) -> None:
    done = run_as_user([str(VENV_BIN / "homesync"), "enroll", "--server", nodes[node].address, "--user", "joe",
                        "--machine", machine, "--fingerprint", nodes.fingerprint, "--password-stdin"],
                       computer.home, input="joe-secret-pw\n")
    assert done.returncode == 0, done.stderr


def _start_backup(computer: Computer) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "homesync"), "backup", "--json"], env=user_env(computer.home),
                            cwd=computer.home, user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _audit(nodes, action: str) -> list[dict]:
    rows = nodes[0].index_rows(f"SELECT machine_id, actor, detail FROM audit WHERE action = '{action}' ORDER BY id")
    return [dict(machine_id=m, actor=a, **json.loads(d)) for m, a, d in rows]


def test_every_node_says_it_is_alive_and_a_killed_one_is_dead_after_its_missed_heartbeats(server_nodes):
    listed = server_nodes.listed()
    assert sorted(listed) == ["node-a", "node-b", "node-c"]
    for number, node in enumerate(server_nodes.nodes):
        row = listed[server_nodes.node_id(number)]
        assert (row["address"], row["state"], row["dead"], row["sessions"], row["version"]) == \
            (node.address, "serving", False, 0, __version__)
        assert row["heartbeat_seconds"] == HEARTBEAT and row["age"] < 3 * HEARTBEAT + 1
        assert row["pid"] == node.process.pid and row["leases"] == []
    time.sleep(2 * HEARTBEAT)
    assert all(server_nodes.listed()[n]["heartbeat"] > listed[n]["heartbeat"] for n in listed)  # beating
    table = server_nodes.cli("nodes")
    assert table.returncode == 0 and table.stdout.split()[:4] == ["NODE", "ADDRESS", "STATE", "HEARTBEAT"]

    killed = time.monotonic()
    server_nodes.kill(1)
    after = server_nodes.wait_listed(lambda n: n["node-b"]["dead"], 10, "node-b dead")
    print(f"a killed node counts as dead after {time.monotonic() - killed:.2f} s "
          f"({DEAD_AFTER} x {HEARTBEAT} s heartbeats)")
    assert not after["node-a"]["dead"] and not after["node-c"]["dead"] and after["node-b"]["state"] == "serving"
    assert "DEAD" in server_nodes.cli("nodes").stdout


def test_a_node_killed_mid_backup_the_next_attempt_goes_through_another_node(server_nodes, computer_factory):
    laptop = computer_factory()
    _big_home(laptop)
    _enroll(laptop, server_nodes, 0, "Failover")
    machine_id = laptop.machine_id()
    repo = _repo(server_nodes, machine_id)
    addresses = ", ".join(f'"{a}"' for a in server_nodes.addresses())
    # a checkpoint every second, and a rate that makes the backup last several: the node dies after one
    policy = (f"[server]\naddresses = [{addresses}]\n"
              '[backup]\ncheckpoint_interval = "1s"\nupload_ratelimit = "16MiB/s"\n')
    assert server_nodes.cli("policy", "set", "-", input=policy).returncode == 0
    fetched = run_as_user([str(VENV_BIN / "python"), "-c", FETCH_POLICY], laptop.home)
    assert fetched.returncode == 0, fetched.stderr

    commits = {p.name for p in repo.glob("index.*")}
    backup = _start_backup(laptop)  # through node-a, the first address
    _wait(lambda: any(h[0] == "node-a" for h in borg.lock_holders(repo)), 60, "node-a's borg serve locked it")
    _wait(lambda: {p.name for p in repo.glob("index.*")} - commits, 60, "borg committed a checkpoint")
    assert backup.poll() is None, "the backup ended before the node could be killed"
    server_nodes.kill(0)  # the node's machine dies: its borg serve too, leaving its lock
    _, stderr = backup.communicate(timeout=120)
    assert backup.returncode == 14 and stderr.strip().count("\n") == 0, stderr  # the server closed the connection
    assert {h[0] for h in borg.lock_holders(repo)} == {"node-a"}, "the dead node's lock is left in the repository"

    server_nodes.wait_listed(lambda n: n["node-a"]["dead"], 10, "node-a dead")
    started = time.monotonic()
    done = laptop.json("backup")  # fails over: node-a refuses connections, node-b answers
    print(f"the next attempt, through another node: {time.monotonic() - started:.2f} s")
    assert done["result"] == "success" and done["files"] == 5
    # it went on from the checkpoint: what the dead node had committed was not sent again
    print(f"after the checkpoint: {done['deduplicated_size'] >> 20} of {done['original_size'] >> 20} MiB sent again")
    assert done["deduplicated_size"] < done["original_size"] - (4 << 20), done
    [broken] = _audit(server_nodes, "borg_lock_broken")
    assert broken["machine_id"] == machine_id and broken["by_node"] == "node-b"
    assert [h.split(".")[0] for h in broken["holders"]] == ["node-a"]

    background_done(laptop, server_nodes[1])
    assert borg.lock_holders(repo) == set(), "a lock is left"
    check = server_borg(server_nodes[1], machine_id, "check", "{repo}")
    assert check.returncode == 0
    assert done["name"] in archive_names(server_nodes[1], machine_id)
    rows = server_nodes[1].index_rows(f"SELECT name, result FROM archives WHERE machine_id = '{machine_id}'")
    assert (done["name"], "success") in rows and {r for _, r in rows} <= {"success", "interrupted", "failed"}
    assert server_nodes[1].index_rows(f"SELECT pending_since FROM history WHERE machine_id = '{machine_id}'") == \
        [(None,)]
    verified = server_nodes.cli("audit", "verify", "--json", node=1)
    assert verified.returncode == 0 and json.loads(verified.stdout)["intact"], verified.stdout
    wait_for_keeping(laptop)


def test_sigterm_drains_a_node_its_running_backup_finishes_and_new_sessions_go_elsewhere(postgres_url,
                                                                                         computer_factory):
    nodes = start_nodes(postgres_url, count=2)
    try:
        laptop = computer_factory()
        _big_home(laptop, 96)
        _enroll(laptop, nodes, 1, "Drained")  # every session of this computer through node-b
        machine_id = laptop.machine_id()
        backup = _start_backup(laptop)
        _wait(lambda: borg.lock_holders(_repo(nodes, machine_id)), 60, "the backup's borg serve runs")
        nodes[1].process.send_signal(signal.SIGTERM)
        listed = nodes.wait_listed(lambda n: n["node-b"]["state"] == "draining", 10, "node-b draining")
        assert listed["node-b"]["sessions"] >= 1 and not listed["node-b"]["dead"]
        other = computer_factory()
        refused = run_as_user([str(VENV_BIN / "homesync"), "enroll", "--server", nodes[1].address, "--user",
                               "joe", "--machine", "Elsewhere", "--fingerprint", nodes.fingerprint,
                               "--password-stdin"], other.home, input="joe-secret-pw\n")
        assert refused.returncode == 14, refused.stderr  # unreachable: an agent goes to the next address
        if backup.poll() is None:
            assert nodes[1].process.poll() is None, "the node stopped before its running backup ended"
        out, err = backup.communicate(timeout=120)
        assert backup.returncode == 0, err
        assert nodes[1].process.wait(timeout=60) == 0
        stopped = nodes.listed()["node-b"]
        assert stopped["state"] == "stopped" and not stopped["dead"] and stopped["sessions"] == 0
        archive = json.loads(out)["name"]
        assert nodes[0].index_rows(f"SELECT result FROM archives WHERE name = '{archive}'") == [("success",)]
        assert borg.lock_holders(_repo(nodes, machine_id)) == set()
        wait_for_keeping(laptop)
    finally:
        nodes.close()


def _set_retention(nodes) -> None:
    config = nodes[0].data / "server.toml"
    text = config.read_text()
    for default, wanted in PRUNE_POLICY.items():
        assert default in text
        text = text.replace(default, wanted)
    config.write_text(text)


def _machine_with_old_archives(nodes, computer_factory, name: str, seed: int) -> str:
    from tests.support.trees import make_home
    laptop = computer_factory()
    make_home(laptop.home, seed=seed, files=20, total_bytes=1 << 20)
    chown_tree(laptop.home)
    _enroll(laptop, nodes, 0, name)
    laptop.json("backup")
    background_done(laptop, nodes[0])
    machine_id = laptop.machine_id()
    source = nodes[0].data.parent / "src"
    source.mkdir(exist_ok=True)
    (source / "f").write_bytes(os.urandom(4096))
    chown_tree(source)
    for archive, when in OLDER.items():
        server_borg(nodes[0], machine_id, "create", "--timestamp", when, f"{{repo}}::{archive}", "src")
    wait_for_keeping(laptop)
    return machine_id


def _prune(nodes, node: int, *args: str) -> subprocess.Popen:
    server = nodes[node]
    demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []}
    return subprocess.Popen([str(VENV_BIN / "homesync-server"), "prune", "--json", *args, "--data", str(server.data)],
                            env=user_env(server.data.parent, HOMESYNC_NODE_ID=nodes.node_id(node)),
                            cwd=server.data.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **demote)


def test_two_nodes_pruning_at_once_never_work_on_one_repository_at_the_same_time(postgres_url, computer_factory):
    nodes = start_nodes(postgres_url, count=3)
    try:
        _set_retention(nodes)
        began = time.monotonic()
        machines = [_machine_with_old_archives(nodes, computer_factory, f"Pruned {n}", 70 + n) for n in range(2)]
        print(f"set-up {time.monotonic() - began:.1f} s")
        began = time.monotonic()
        runs = [_prune(nodes, 1), _prune(nodes, 2)]
        results = []
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
            results += json.loads(out)
        spans = [(min(r["started"] for r in results if r["node"] == n), max(r["finished"] for r in results
                                                                          if r["node"] == n)) for n in ("node-b", "node-c")]
        assert max(s for s, _ in spans) < min(f for _, f in spans), f"the two prunes did not run at once: {spans}"
        for machine_id in machines:
            worked = sorted((r["started"], r["finished"], r["node"]) for r in results
                            if r["machine_id"] == machine_id and r["result"] != "skipped")
            assert worked, f"nobody pruned {machine_id}: {results}"
            for (_, first_end, _), (second_start, _, _) in zip(worked, worked[1:]):
                assert first_end <= second_start, f"two nodes pruned {machine_id} at once: {worked}"
            skipped = [r for r in results if r["machine_id"] == machine_id and r["result"] == "skipped"]
            assert all("is pruning it" in r["reason"] for r in skipped)
            [pruned] = [r for r in results if r["machine_id"] == machine_id and r["result"] == "pruned"]
            assert pruned["deleted"] and archive_names(nodes[0], machine_id) == set(pruned["kept"])
        print(f"two prunes at once: {time.monotonic() - began:.1f} s;", sorted(
            (r["node"], r["machine_id"][:6], r["result"], round(r["finished"] - r["started"], 1)) for r in results))
        assert {r["result"] for r in results} <= {"pruned", "nothing to prune", "skipped"}
        pruned = _audit(nodes, "prune")
        assert sorted(p["machine_id"] for p in pruned) == sorted(machines)  # each machine's archives deleted once
        assert nodes[0].index_rows("SELECT name FROM leases") == []
    finally:
        nodes.close()


def test_the_prune_lease_of_a_killed_node_is_taken_over(postgres_url, computer_factory):
    nodes = start_nodes(postgres_url, count=2)
    try:
        _set_retention(nodes)
        machine_id = _machine_with_old_archives(nodes, computer_factory, "Taken over", 81)
        run = _prune(nodes, 0, "--machine", machine_id)
        _wait(lambda: nodes[0].index_rows(f"SELECT node FROM leases WHERE name = 'prune:{machine_id}'"), 60,
              "node-a's prune took the lease", 0.01)
        os.killpg(run.pid, signal.SIGKILL)  # node-a's machine dies: its prune, its borg, its serve
        nodes.kill(0)
        run.wait(timeout=30)
        holder = nodes[1].index_rows(f"SELECT node, expires FROM leases WHERE name = 'prune:{machine_id}'")
        assert [h[0] for h in holder] == ["node-a"], "the dead node's lease stays until it expires"
        _wait(lambda: time.time() > holder[0][1], LEASE + 5, "the lease expired")
        nodes.wait_listed(lambda n: n["node-a"]["dead"], 10, "node-a dead")
        out = nodes.cli("prune", "--json", "--machine", machine_id, node=1)
        assert out.returncode == 0, out.stderr
        [result] = json.loads(out.stdout)
        assert result["node"] == "node-b" and result["result"] in ("pruned", "nothing to prune"), result
        assert not set(result["deleted"]) & archive_names(nodes[1], machine_id)
        assert borg.lock_holders(_repo(nodes, machine_id)) == set()
        assert server_borg(nodes[1], machine_id, "check", "{repo}").returncode == 0
        assert nodes[1].index_rows("SELECT name FROM leases") == []
    finally:
        nodes.close()


HOLD_LOCK = ("import sys, time\nfrom borg.locking import Lock\n"
             "lock = Lock(sys.argv[1] + '/lock', exclusive=True).acquire()\n"
             "print('locked', flush=True)\ntime.sleep(float(sys.argv[2]))\nlock.release()\n")


def test_the_lock_of_a_live_node_is_never_broken(server_nodes, computer_factory):
    laptop = computer_factory()
    (laptop.home / "notes.txt").write_text("notes\n")
    chown_tree(laptop.home)
    _enroll(laptop, server_nodes, 1, "Waits")
    first = laptop.json("backup")
    background_done(laptop, server_nodes[1])
    repo = _repo(server_nodes, laptop.machine_id())
    # borg's own lock, as node-a's borg takes it (BORG_HOST_ID node-a), held 5 s by a live process
    holder = subprocess.Popen([str(VENV_BIN / "python"), "-c", HOLD_LOCK, str(repo), "5"],
                              env=user_env(repo.parent, BORG_HOST_ID="node-a"), user=UNPRIVILEGED,
                              group=UNPRIVILEGED, extra_groups=[], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert {h[0] for h in borg.lock_holders(repo)} == {"node-a"}
    started = time.monotonic()
    second = laptop.json("backup")  # through node-b: it waits for node-a's lock (borg's lock wait)
    waited = time.monotonic() - started
    assert holder.wait(timeout=30) == 0  # its lock was its own until it released it
    print(f"a backup waited {waited:.2f} s for a live node's lock")
    assert second["result"] == "success" and second["name"] != first["name"] and waited > 3
    assert _audit(server_nodes, "borg_lock_broken") == []
    wait_for_keeping(laptop)
