"""The report benchmark (issue 5): a synthetic index of 100,000 machines with 30
archives each, then `homesync-server report` in every format, `metrics` and
`audit verify`, each timed as the admin runs it (a fresh process; median of --runs).

    .venv/bin/python bench/report_bench.py [--machines 100000] [--archives 30] [--runs 5] [--keep DIR]
                                           [--engine sqlite|postgresql]

With --engine postgresql the same index is moved into a throwaway PostgreSQL cluster
(`homesync-server index migrate`, as root: the cluster runs as nobody) and the commands
run against it ([index] url), so both engines are timed on the same data.

The synthetic data is written with sqlite3 directly (test data, not product code);
the schema comes from the product's own Index, so it is always the current one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from homesync import exits  # noqa: E402
from homesync_server import audit  # noqa: E402
from homesync_server.actions import setup  # noqa: E402
from homesync_server.config import Layout  # noqa: E402

HOMESYNC_SERVER = Path(sys.executable).parent / "homesync-server"
TARGET_SECONDS = 2.0
DAY = 86400.0
MACHINES_PER_USER = 4
GONE_SHARE = 0.02  # owners missing from the directory
RESULTS = ("success",) * 27 + ("warning", "failed", "interrupted")


def build(data: Path, machines: int, archives: int, seed: int = 5) -> dict[str, float]:
    """Create a server data directory whose index holds the synthetic fleet; return
    how long each part took."""
    rng, now, took = random.Random(seed), time.time(), {}
    started = time.monotonic()
    setup.init(Layout(data), "127.0.0.1:2222")
    users = [f"user{n:06d}" for n in range(max(1, machines // MACHINES_PER_USER))]
    _write_directory(data / "users.json", [u for u in users if rng.random() > GONE_SHARE])
    db = sqlite3.connect(data / "index.sqlite", isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    db.executemany("INSERT INTO users (name, display_name, first_seen) VALUES (?, ?, ?)",
                   ((u, f"User {u[4:]}", now - 400 * DAY) for u in users))
    fleet = list(_machines(rng, users, machines, now))
    db.executemany("INSERT INTO machines (id, owner, name, name_key, hostname, public_key, enrolled, last_seen, "
                   "state, agent_state, agent_reason, agent_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   fleet)
    with _bulk_archives(db):
        db.executemany("INSERT INTO archives (machine_id, name, start, end, files, original_size, compressed_size, "
                       "deduplicated_size, result, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (a for m in fleet for a in _archives(rng, m, archives, now)))
    took["archives"] = time.monotonic() - started
    _drills_and_flags(db, rng, fleet, now)
    _audit(db, rng, fleet, now)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    took["total"] = time.monotonic() - started
    return took


@contextmanager
def _bulk_archives(db: sqlite3.Connection):
    """Load archives without the per-row trigger that keeps archive_totals, then fill
    archive_totals in one statement and put the trigger back (as the schema has it)."""
    trigger = db.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'archive_totals_insert'"
                         ).fetchone()[0]
    db.execute("DROP TRIGGER archive_totals_insert")
    yield
    db.execute("DELETE FROM archive_totals")
    db.execute("INSERT INTO archive_totals SELECT * FROM archive_figures")
    db.execute(trigger)


def _write_directory(path: Path, users: list[str]) -> None:
    # One shared dummy hash: nobody logs in here, the report only lists people.
    record = {"hash": "scrypt$AAAA$AAAA", "admin": False}
    path.write_text(json.dumps({u: dict(record, display_name=f"User {u[4:]}") for u in users}))


def _machines(rng: random.Random, users: list[str], count: int, now: float):
    reasons = ("", "", "", "not on the corporate network", "on battery", "metered connection",
               "borg failed: repository locked")
    for n in range(count):
        owner = users[n % len(users)]
        state = "retired" if n % 97 == 0 else "replaced" if n % 89 == 0 else "active"
        yield (f"{n:016x}", owner, f"Laptop {n}", f"laptop {n}", f"host-{n}", "ssh-ed25519 AAAA",
               now - 400 * DAY, now - rng.expovariate(1 / (6 * 3600)), state, "idle", rng.choice(reasons),
               "0.1.0")


def _archives(rng: random.Random, machine: tuple, count: int, now: float):
    # The newest backup's age: mostly hours, a tail of days and weeks (STALE, CRITICAL).
    newest = now - rng.choice((rng.expovariate(1 / (8 * 3600)),) * 8 + (3 * DAY + rng.random() * 3 * DAY,
                                                                      10 * DAY + rng.random() * 60 * DAY))
    size = rng.randint(1 << 30, 60 << 30)
    for i in range(count):
        end = newest - (count - 1 - i) * DAY
        dedup = size // 3 if i == 0 else rng.randint(1 << 20, 200 << 20)
        yield (machine[0], f"{machine[0]}-{i:04d}", end - 300, end, 200_000, size, size // 2, dedup,
               RESULTS[rng.randrange(len(RESULTS))] if i else "success", "")


def _drills_and_flags(db: sqlite3.Connection, rng: random.Random, fleet: list[tuple], now: float) -> None:
    """A month of drills on a sample of machines (2% of them failing) and a few
    mass-change freezes, as `drill` and the backup reports write them."""
    sample = rng.sample(fleet, min(len(fleet), 3000))
    db.executemany(
        "INSERT INTO drills (machine_id, started, finished, archive, result, failures, files, bytes, check_seconds, "
        "extract_seconds, throughput, rpo_seconds, hashed_files) VALUES (?, ?, ?, ?, ?, ?, 200000, ?, 30, 600, ?, "
        "3600, 20)",
        ((m[0], at - 630, at, f"{m[0]}-0029", "failed" if failed else "passed",
          json.dumps([{"stage": "extract", "message": "3 files differ from the archive"}] if failed else []),
          5 << 30, (5 << 30) / 600)
         for m in sample for at, failed in [(now - rng.random() * 30 * DAY, rng.random() < 0.02)]))
    db.executemany("INSERT INTO mass_change (machine_id, archive, share, baseline, flagged_at) VALUES (?, ?, ?, ?, ?)",
                   ((m[0], f"{m[0]}-0029", 0.9, 0.02, now - rng.random() * 3 * DAY) for m in rng.sample(fleet, 20)))


def _audit(db: sqlite3.Connection, rng: random.Random, fleet: list[tuple], now: float) -> None:
    """Write enrollments for every machine and a month of restores, releases and
    failed logins, hash-chained like the product writes them."""
    rows = [{"id": 0, "at": now - 400 * DAY + n, "actor": m[1], "action": "enroll", "machine_id": m[0],
             "source": "10.0.0.1:50000", "detail": json.dumps({"hostname": m[4], "name": m[2]}, sort_keys=True)}
            for n, m in enumerate(fleet)]
    for _ in range(2000):
        m = rng.choice(fleet)
        at = now - rng.random() * 30 * DAY
        rows.append({"id": 0, "at": at, "actor": m[1], "action": "passphrase_release", "machine_id": m[0],
                     "source": "10.0.0.2:50000", "detail": json.dumps({"to": "owner"})})
        rows.append({"id": 0, "at": at + 60, "actor": m[1], "action": "restore", "machine_id": m[0],
                     "source": "10.0.0.2:50000", "detail": json.dumps(
                         {"archive": f"{m[0]}-0029", "bytes": 5 << 30, "files": 200_000, "hostname": "new-host",
                          "result": "success", "seconds": 600.0}, sort_keys=True)})
        rows.append({"id": 0, "at": at - 30, "actor": m[1], "action": "login_failed", "machine_id": None,
                     "source": "10.0.0.3:50000", "detail": json.dumps({"reason": "wrong user name or password"})})
    rows.sort(key=lambda r: r["at"])
    for n, row in enumerate(rows, 1):
        row["id"] = n
    hashes = audit.chain(rows)
    db.executemany("INSERT INTO audit (id, at, actor, action, machine_id, source, detail, prev_hash, hash) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   ((r["id"], r["at"], r["actor"], r["action"], r["machine_id"], r["source"], r["detail"],
                     prev, digest) for r, (_, prev, digest) in zip(rows, hashes)))


def reference_seconds() -> float:
    """Time a fixed pure-Python loop: how fast this machine runs Python right now (on a
    shared virtual machine the same loop takes from 0.09 s to 0.15 s from one minute to
    the next; the figures of a run are comparable only with this beside them)."""
    started = time.perf_counter()
    total = 0
    for n in range(3_000_000):
        total += n
    return time.perf_counter() - started


def time_command(args: list[str], runs: int, references: list[float] | None = None) -> dict:
    """Run a homesync-server command runs times; return its times, exit status and output
    size; add a reference_seconds() taken before each run to references."""
    times, cpu, rc, size = [], [], None, 0
    for _ in range(runs):
        if references is not None:
            references.append(reference_seconds())
        started, before = time.monotonic(), _children_cpu()
        done = subprocess.run([str(HOMESYNC_SERVER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        times.append(time.monotonic() - started)
        cpu.append(_children_cpu() - before)
        rc, size = done.returncode, len(done.stdout)
        if rc not in (0, exits.REPORT_CRITICAL):
            raise RuntimeError(f"{' '.join(args)} failed ({rc}): {done.stderr.decode()[-500:]}")
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "cpu": statistics.median(cpu), "rc": rc, "stdout_bytes": size}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--archives", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", help="build the index in DIR (reused if it exists)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hs-report-bench-"))
    data = base / "data"
    if not (data / "index.sqlite").exists():
        took = build(data, args.machines, args.archives)
        print(f"built {args.machines} machines x {args.archives} archives in {took['total']:.1f} s")
    out = base / "out"
    out.mkdir(exist_ok=True)
    with _engine(data, args.engine):
        _time_all(data, out, args)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(base)])
    return 0


@contextmanager
def _engine(data: Path, engine: str):
    """Run the block with the data directory's index on engine (PostgreSQL: a copy in a
    throwaway cluster, server.toml pointing at it; restored afterwards)."""
    if engine == "sqlite":
        yield
        return
    from tests.support.postgres import Cluster

    cluster, config = Cluster(), data / "server.toml"
    text = config.read_text()
    try:
        url = cluster.new_database()
        started = time.monotonic()
        moved = subprocess.run([str(HOMESYNC_SERVER), "index", "migrate", "--to", url, "--data", str(data)],
                               capture_output=True, text=True)
        if moved.returncode != 0:
            raise RuntimeError(f"index migrate failed: {moved.stderr}")
        print(f"moved the index to PostgreSQL in {time.monotonic() - started:.1f} s")
        config.write_text(text + f'\n[index]\nurl = "{url}"\n')
        yield
    finally:
        config.write_text(text)
        cluster.close()


def _time_all(data: Path, out: Path, args: argparse.Namespace) -> None:
    results, references = {}, []
    for fmt in ("table", "json", "csv", "html"):
        results[f"report --format {fmt}"] = time_command(
            ["report", "--data", str(data), "--format", fmt, "--output", str(out / f"report.{fmt}")], args.runs,
            references)
        results[f"report --format {fmt}"]["file_bytes"] = (out / f"report.{fmt}").stat().st_size
    results["metrics"] = time_command(["metrics", "--data", str(data), "--output", str(out / "m.prom")], args.runs,
                                      references)
    results["metrics"]["file_bytes"] = (out / "m.prom").stat().st_size
    results["audit verify"] = time_command(["audit", "verify", "--data", str(data)], args.runs, references)
    startup = time_command(["--help"], args.runs)["median"]
    print(f"{'command':24} {'median':>7} {'min':>7} {'max':>7} {'cpu':>7} {'output':>8}  within {TARGET_SECONDS:g} s")
    for name, r in results.items():
        size = r.get("file_bytes", r["stdout_bytes"])
        print(f"{name:24} {r['median']:6.2f}s {r['min']:6.2f}s {r['max']:6.2f}s {r['cpu']:6.2f}s "
              f"{size / 1e6:6.1f}MB  {'yes' if r['median'] <= TARGET_SECONDS else 'NO'}")
    print(f"wall time of a fresh process each (median of {args.runs}), including the interpreter's start: "
          f"`homesync-server --help` takes {startup:.2f} s; cpu = user + system of that process; "
          f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"a reference Python loop timed before each run took {min(references):.3f}–{max(references):.3f} s "
          f"(median {statistics.median(references):.3f} s; lower is a faster machine); engine {args.engine}")


if __name__ == "__main__":
    sys.exit(main())
