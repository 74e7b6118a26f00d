"""The agent's own figures, measured on the real agent process against the real server
with a fake NetworkManager on a private system bus; prints JSON.

- link-up → archive in the server's index, over several runs (a change is made while
  off the network before each link-up), split into the agent's decision (link-up →
  borg started) and the backup itself;
- the agent's memory (RSS) with a tree of 100,000 files under inotify watch;
- its CPU time and wakeups while idle for 10 s, with that tree watched.

Usage: .venv/bin/python bench/agent_latency.py [--runs 5] [--files 100000] [--idle 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.end_to_end.agent.harness import Laptop, enrolled_laptop, stop_and_clean, wait_for  # noqa: E402
from tests.support.fakebus import FakeNetworkManager, PrivateBus, ServiceThread  # noqa: E402
from tests.support.homesync_client import Computer  # noqa: E402
from tests.support.homesync_server import start_server  # noqa: E402
from tests.support.processes import chown_tree, private_dir, remove  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def measure_latency(laptop: Laptop, nm: FakeNetworkManager, runs: int) -> dict:
    """Bring the corporate link up `runs` times, a change made before each; return the latencies."""
    laptop.start()
    total, decision = [], []
    for run in range(runs):
        laptop.wait_status(lambda s: s["job"] is None and not s["network"]["on_corporate"], 30, "off the network")
        (laptop.home / f"change-{run}.txt").write_text(f"change {run}\n")
        laptop.wait_status(lambda s: s["dirty"]["count"] > 0, 10, "the change seen")
        before = len(laptop.successes())
        up_wall, up = time.time(), time.monotonic()
        nm.connection_up("Office", domains=["corp.example.com"])
        wait_for(lambda: len(laptop.successes()) > before, 60, "the backup", interval=0.01)
        total.append(time.monotonic() - up)
        status = laptop.wait_status(lambda s: s["job"] is None, 10, "the job finished")
        decision.append(status["last_result"]["started"] - up_wall)
        nm.connection_down("Office")
    laptop.stop()
    return {"runs": runs, "link_up_to_archive_s": _summary(total), "link_up_to_borg_start_s": _summary(decision),
            "all_link_up_to_archive_s": [round(x, 3) for x in total]}


def measure_idle(laptop: Laptop, files: int, idle: float) -> dict:
    """Watch a tree of `files` files, off the network; return RSS, idle CPU and wakeups."""
    directories = make_tree(laptop.home / "tree", files)
    started = time.monotonic()
    laptop.start(timeout=600)  # returns once the tree is watched
    watch_setup = time.monotonic() - started
    time.sleep(2)  # let start-up work finish
    pid = laptop.process.pid
    cpu0, switches0, wall0 = _cpu_seconds(pid), _context_switches(pid), time.monotonic()
    time.sleep(idle)
    cpu1, switches1, wall1 = _cpu_seconds(pid), _context_switches(pid), time.monotonic()
    rss, threads = _rss_kib(pid), len(os.listdir(f"/proc/{pid}/task"))
    status = laptop.ask()
    laptop.stop()
    return {"files": files, "directories": directories, "watcher_mode": status["watcher"]["mode"],
            "watch_setup_s": round(watch_setup, 2), "rss_mib": round(rss / 1024, 1),
            "idle_seconds": round(wall1 - wall0, 1), "idle_cpu_s": round(cpu1 - cpu0, 3),
            "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 3),
            "idle_wakeups_per_s": round((switches1 - switches0) / (wall1 - wall0), 1),
            "threads": threads}


def make_tree(root: Path, files: int, per_directory: int = 50) -> int:
    """Create `files` small files, per_directory in each directory; return the directory count."""
    directories = 0
    for i in range(files):
        if i % per_directory == 0:
            directory = root / f"d{i // 5000:03}" / f"e{i // per_directory:05}"
            directory.mkdir(parents=True)
            directories += 1
        (directory / f"f{i:06}.txt").write_bytes(b"x" * 100)
    chown_tree(root)
    return directories


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (all threads)


def _context_switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    bus, services, server = PrivateBus("system").start(), ServiceThread().start(), start_server()
    nm = FakeNetworkManager(services, bus.address).start()
    homes, results = [], {}
    try:
        for part in ("latency", "idle"):
            home = private_dir("hs-bench-agent-")
            homes.append(home)
            (home / "notes.txt").write_text("notes\n")
            chown_tree(home)
            laptop = enrolled_laptop(server, Computer(home), {"DBUS_SYSTEM_BUS_ADDRESS": bus.address,
                                                              "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"})
            try:
                results[part] = measure_latency(laptop, nm, args.runs) if part == "latency" else \
                    measure_idle(laptop, args.files, args.idle)
            finally:
                stop_and_clean(laptop)
    finally:
        nm.stop()
        services.stop()
        bus.stop()
        server.stop()
        remove(server.data.parent)
        for home in homes:
            remove(home)
    results["note"] = ("fake NetworkManager on a private bus, real server and borg on loopback; "
                       f"{os.cpu_count()} CPUs; link-up to archive includes borg's whole run")
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
