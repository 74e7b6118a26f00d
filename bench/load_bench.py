"""Load on one and on two server nodes (issue 14), and the RPC throughput of backup
reports on both index engines (issue 13), on loopback.

load: N computers with small homes, enrolled through node A (PostgreSQL index); rounds
of N concurrent `homesync backup`s: the first backups through node A, then a change in
every home backed up through node A alone, then through nodes A and B (two `serve`
processes on one data directory and one index URL; computers alternate between them, as
DNS round robin or a TCP load balancer spreads them). Every backup must succeed; each
round gives backups/s, p50/p95/max backup time, and each node's RSS and open file
descriptors before the round, right after it, and once the post-session checks and the
computers' catalog keeping are done.

rpc: C concurrent clients, each a machine logged in with its key, call `backup.report`
(the op `homesync backup` ends with): R reports on one held session each, then S new
sessions of one report each (login + report, what an agent does); on SQLite and on
PostgreSQL.

Usage (as root): .venv/bin/python bench/load_bench.py [--computers 50] [--clients 50]
    [--reports 20] [--sessions 3] [--files 30] [--rounds first,one,two] [--skip load|rpc]
    [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import shutil
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.server_memory import enroll  # noqa: E402
from tests.support.homesync_client import Computer, wait_for_keeping  # noqa: E402
from tests.support.homesync_server import PASSWORDS, RunningServer, start_server  # noqa: E402
from tests.support.postgres import shared_cluster  # noqa: E402
from tests.support.processes import free_port, remove  # noqa: E402

# Every client here comes from 127.0.0.1, as every agent does behind a NAT or a load
# balancer that hides their addresses: the per-address cap of connections waiting to log
# in (default 8) would turn most of them away. Raised as the deployment guide says.
LIMITS = "max_unauthenticated = 256\nmax_unauthenticated_per_address = 256\nmax_sessions = 512"


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile (share 0.5: the median) of values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def sample(pid: int) -> dict:
    """Return a process's resident memory (MB) and open file descriptors."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


def second_node(server: RunningServer) -> RunningServer:
    """Start another `serve` on the same data directory and index (same host key), as a
    node of its own (node-b: its own heartbeat row and borg host id)."""
    node = RunningServer(server.data, f"127.0.0.1:{free_port()}", server.fingerprint, index_url=server.index_url,
                         env={"HOMESYNC_NODE_ID": "node-b"})
    node.start()
    return node


# --- load ----------------------------------------------------------------------------

def point_at(computer: Computer, address: str) -> None:
    """Make config.toml name this node (the enrolled address replaced)."""
    path = computer.home / ".config/homesync/config.toml"
    lines = [f'address = "{address}"' if line.startswith("address = ") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def settle(server: RunningServer, computers: list[Computer], timeout: float = 600) -> float:
    """Wait until every session is checked and every catalog keeping is done; return how long it took."""
    started = time.monotonic()
    deadline = started + timeout
    for computer in computers:
        wait_for_keeping(computer, max(deadline - time.monotonic(), 1))
    while time.monotonic() < deadline:
        if server.index_rows("SELECT COUNT(*) FROM history WHERE pending_since IS NOT NULL") == [(0,)]:
            break
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def backup_round(label: str, computers: list[Computer], through: list[RunningServer],
                 nodes: list[RunningServer], number: int) -> dict:
    """Back every computer up at once, computers alternating over the nodes in through; return the round's figures."""
    for i, computer in enumerate(computers):
        point_at(computer, through[i % len(through)].address)
        (computer.home / "round.txt").write_text(f"round {number}\n")
        os.chown(computer.home / "round.txt", computer.uid, computer.uid)
    before = {n.address: sample(n.process.pid) for n in nodes}

    def one(computer: Computer) -> tuple[float, int, str]:
        started = time.monotonic()
        done = computer.run("backup", "--json", timeout=900)
        return time.monotonic() - started, done.returncode, done.stderr[-300:]
    started = time.monotonic()
    with ThreadPoolExecutor(len(computers)) as pool:
        outcomes = list(pool.map(one, computers))
    wall = time.monotonic() - started
    after = {n.address: sample(n.process.pid) for n in nodes}
    settled_in = settle(nodes[0], computers)
    settled = {n.address: sample(n.process.pid) for n in nodes}
    times = [t for t, rc, _ in outcomes if rc == 0]
    failures = [f"rc {rc}: {err.strip()}" for _, rc, err in outcomes if rc != 0]
    return {"round": label, "nodes": len(through), "computers": len(computers), "succeeded": len(times),
            "failed": len(failures), "failures": failures[:5], "wall_s": round(wall, 2),
            "backups_per_s": round(len(times) / wall, 2),
            "p50_s": round(percentile(times, 0.5), 2) if times else None,
            "p95_s": round(percentile(times, 0.95), 2) if times else None,
            "max_s": round(max(times), 2) if times else None, "settled_in_s": settled_in,
            "servers": {address: {"before": before[address], "after": after[address], "settled": settled[address]}
                        for address in before},
            "load_average_after": os.getloadavg()[0]}


def load_bench(count: int, files: int, which: list[str], log_to: Path | None = None) -> dict:
    """Run the rounds (first: the first backups through node A; one: node A; two: nodes A
    and B) on a PostgreSQL index; return their figures."""
    server = start_server(settings=LIMITS, index_url=shared_cluster().new_database(),
                          env={"HOMESYNC_NODE_ID": "node-a"})
    node_b, computers = None, []
    try:
        started = time.monotonic()
        computers = enroll(server, count, files, label="load bench")
        enrolled = round(time.monotonic() - started, 1)
        settle(server, computers)
        node_b = second_node(server)
        both = [server, node_b]
        plan = {"first": ("first backups, 1 node", [server]), "one": ("1 node", [server]),
                "two": ("2 nodes", both)}
        rounds = [backup_round(plan[key][0], computers, plan[key][1], both, n)
                  for n, key in enumerate(which, 1)]
        return {"engine": "postgresql", "computers": count, "files_per_home": files, "enrolled_in_s": enrolled,
                "rounds": rounds}
    finally:
        for node in (node_b, server):
            if node is not None and node.process.poll() is None:
                node.stop()
        for computer in computers:
            wait_for_keeping(computer)
            remove(computer.home)
        if log_to is not None and server.log is not None and server.log.exists():
            log_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.log, log_to)  # both nodes' log: why a backup failed
        remove(server.data.parent)


# --- rpc -----------------------------------------------------------------------------

def enroll_keys(server: RunningServer, count: int) -> list[tuple[str, str]]:
    """Enroll count machines of joe's through the RPC the CLI uses; return (machine id, private key text) each."""
    from homesync import transport

    def one(n: int) -> tuple[str, str]:
        key = transport.new_key()
        with transport.Session.connect(server.address, server.fingerprint, "joe", password=PASSWORDS["joe"]) as s:
            answer = s.rpc().call("machine.enroll", name=f"rpc bench {n}", hostname=f"bench-{n}",
                                  public_key=transport.public_key_line(key.pkey), passphrase=os.urandom(32).hex().encode())
        return answer["machine_id"], key.pem
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def _report(base: float, sequence: int) -> dict:
    """Return a well-formed backup report; its archive name (base + sequence ms) is its own."""
    now = time.time()
    name = datetime.fromtimestamp(base + sequence / 1000, timezone.utc)
    return {"name": name.strftime("%Y-%m-%dT%H:%M:%S.") + f"{name.microsecond // 1000:03d}Z",
            "start": now - 5, "end": now - 1, "files": 40, "original_size": 81920, "compressed_size": 40960,
            "deduplicated_size": 2048, "result": "success"}


def report_client(address: str, fingerprint: str, machine_id: str, pem: str, barrier, reports: int,
                  sessions: int) -> dict:
    """One client process: log in, wait for the others, send reports on the held session,
    then open sessions of one report each; return the timings."""
    import paramiko
    from homesync import transport
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
    base, sequence = round(time.time()) - 3600, iter(range(10**9))
    with transport.Session.connect(address, fingerprint, machine_id, key=key) as session:
        rpc = session.rpc()
        barrier.wait(300)
        held_start = time.time()
        latencies = []
        for _ in range(reports):
            t = time.monotonic()
            rpc.call("backup.report", **_report(base, next(sequence)))
            latencies.append(time.monotonic() - t)
        held_end = time.time()
    barrier.wait(300)
    fresh_start, fresh = time.time(), []
    for _ in range(sessions):
        t = time.monotonic()
        with transport.Session.connect(address, fingerprint, machine_id, key=key) as session:
            session.rpc().call("backup.report", **_report(base, next(sequence)))
        fresh.append(time.monotonic() - t)
    return {"held": (held_start, held_end, latencies), "fresh": (fresh_start, time.time(), fresh)}


def _phase(results: list[dict], part: str) -> dict:
    start = min(r[part][0] for r in results)
    end = max(r[part][1] for r in results)
    latencies = [x for r in results for x in r[part][2]]
    return {"calls": len(latencies), "wall_s": round(end - start, 2),
            "per_s": round(len(latencies) / (end - start), 1) if end > start else None,
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 0.95) * 1000, 1) if latencies else None}


def rpc_bench(engine: str, clients: int, reports: int, sessions: int) -> dict:
    """Measure backup reports per second with clients concurrent machines on one engine."""
    os.environ["HOMESYNC_TEST_INDEX"] = "sqlite"  # start_server's default when no URL is given
    url = shared_cluster().new_database() if engine == "postgresql" else None
    server = start_server(settings=LIMITS, index_url=url)
    try:
        machines = enroll_keys(server, clients)
        context = multiprocessing.get_context("fork")
        with context.Manager() as manager:
            barrier = manager.Barrier(clients)
            with ProcessPoolExecutor(clients, mp_context=context) as pool:
                futures = [pool.submit(report_client, server.address, server.fingerprint, mid, pem, barrier,
                                       reports, sessions) for mid, pem in machines]
                results = [f.result(timeout=900) for f in futures]
        rss = sample(server.process.pid)
        indexed = server.index_rows("SELECT COUNT(*) FROM archives")[0][0]
        return {"engine": engine, "clients": clients, "held_session": _phase(results, "held"),
                "session_per_report": _phase(results, "fresh"), "archives_indexed": indexed,
                "server_after": rss}
    finally:
        server.stop()
        remove(server.data.parent)


# --- output --------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    commit = os.popen(f"git -C {REPO} rev-parse --short HEAD 2>/dev/null").read().strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "load_average_at_start": os.getloadavg(), "commit": commit,
            "host": socket.gethostname()}


def render(results: dict) -> str:
    lines = [f"homesync load bench {results['started']} ({results['machine']['nproc']} CPUs, "
             f"{results['machine']['cpu']}; code at {results['machine']['commit']})"]
    load = results.get("load")
    if load:
        lines.append(f"\nload: {load['computers']} computers, {load['files_per_home']} files a home, "
                     f"PostgreSQL index; enrolled in {load['enrolled_in_s']} s")
        lines.append(f"  {'round':24} {'ok':>4} {'fail':>4} {'wall s':>7} {'backups/s':>9} {'p50 s':>6} "
                     f"{'p95 s':>6} {'max s':>6}  server RSS MB / fds: before → after → settled")
        for r in load["rounds"]:
            servers = "; ".join(f"{s['before']['rss_mb']}/{s['before']['open_fds']} → {s['after']['rss_mb']}/"
                                f"{s['after']['open_fds']} → {s['settled']['rss_mb']}/{s['settled']['open_fds']}"
                                for s in r["servers"].values())
            lines.append(f"  {r['round']:24} {r['succeeded']:>4} {r['failed']:>4} {r['wall_s']:>7} "
                         f"{r['backups_per_s']:>9} {r['p50_s']!s:>6} {r['p95_s']!s:>6} {r['max_s']!s:>6}  {servers}")
            lines += [f"    failed: {f}" for f in r["failures"]]
    for rpc in results.get("rpc", []):
        held, fresh = rpc["held_session"], rpc["session_per_report"]
        lines.append(f"\nrpc backup.report, {rpc['engine']}, {rpc['clients']} clients: held session "
                     f"{held['per_s']}/s (p50 {held['p50_ms']} ms, p95 {held['p95_ms']} ms, {held['calls']} calls); "
                     f"new session per report {fresh['per_s']}/s (p50 {fresh['p50_ms']} ms, p95 "
                     f"{fresh['p95_ms']} ms); server RSS {rpc['server_after']['rss_mb']} MB after")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computers", type=int, default=50, help="computers backing up at once (load)")
    parser.add_argument("--files", type=int, default=30, help="files per home (about 2 KB each)")
    parser.add_argument("--rounds", default="first,one,two",
                        help="the load rounds: first (first backups, node A), one (node A), two (nodes A and B)")
    parser.add_argument("--clients", type=int, default=None, help="concurrent RPC clients (default: --computers)")
    parser.add_argument("--reports", type=int, default=20, help="reports per client on its held session")
    parser.add_argument("--sessions", type=int, default=3, help="new sessions of one report each, per client")
    parser.add_argument("--engines", default="sqlite,postgresql", help="the RPC bench's index engines")
    parser.add_argument("--skip", default="", help="leave out load or rpc")
    parser.add_argument("--output", default=str(REPO / "bench/results"), help="where the JSON goes ('' : nowhere)")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    started = datetime.now(timezone.utc)
    results: dict = {"started": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "machine": machine(),
                     "options": vars(args)}
    ok = True
    if "load" not in skip:
        log_to = Path(args.output) / f"load-{started.strftime('%Y%m%dT%H%M%S')}-serve.log" if args.output else None
        results["load"] = load_bench(args.computers, args.files, [r for r in args.rounds.split(",") if r], log_to)
        ok = all(r["failed"] == 0 for r in results["load"]["rounds"])
    if "rpc" not in skip:
        results["rpc"] = [rpc_bench(engine, args.clients or args.computers, args.reports, args.sessions)
                          for engine in args.engines.split(",") if engine]
        expected = (args.clients or args.computers) * (args.reports + args.sessions)
        ok = ok and all(r["held_session"]["calls"] + r["session_per_report"]["calls"] == expected
                        and r["archives_indexed"] == expected for r in results["rpc"])
    results["load_average_at_end"] = os.getloadavg()
    print(render(results))
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"load-{started.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2))
        print(f"\nJSON: {path}")
    print(json.dumps({"ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
