"""The server's memory over time: a real `homesync-server serve` (as `nobody`), N
computers enrolled with small homes, rounds of N concurrent `homesync backup`s; after
each round (and its post-session checks) the server's VmRSS, threads and open files
are sampled. Prints one JSON line per round, then a summary.

With --trace, the server runs with HOMESYNC_TRACEMALLOC and gets SIGUSR1 after each
round: the lines whose allocations grew most are in its log (printed at the end).

Usage (as root): .venv/bin/python bench/server_memory.py [--computers 20] [--rounds 10] [--trace]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.homesync_client import Computer  # noqa: E402
from tests.support.homesync_server import start_server  # noqa: E402
from tests.support.processes import chown_tree, private_dir, remove  # noqa: E402
from tests.support.trees import make_home  # noqa: E402


def enroll(server, count: int, files: int, label: str = "memory bench") -> list[Computer]:
    """Return count computers with small homes (files of ~2 KB), enrolled as joe's
    ("<label> N"), 4 at a time."""
    def one(n: int) -> Computer:
        computer = Computer(private_dir("hs-bench-"))
        make_home(computer.home, seed=n, files=files, total_bytes=files * 2048)
        chown_tree(computer.home)
        done = computer.enroll(server, "joe", f"{label} {n}")
        assert done.returncode == 0, done.stderr
        return computer
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def backup_round(computers: list[Computer], round_number: int) -> int:
    """Change a file in every home and back them all up at once; return how many failed."""
    def one(computer: Computer) -> bool:
        (computer.home / "round.txt").write_text(f"round {round_number}\n")
        os.chown(computer.home / "round.txt", computer.uid, computer.uid)
        return computer.run("backup", "--json").returncode == 0
    with ThreadPoolExecutor(len(computers)) as pool:
        return sum(not ok for ok in pool.map(one, computers))


def wait_for_checks(server, timeout: float = 300) -> None:
    """Wait until the server has checked every session (nothing pending in the index)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.index_rows("SELECT COUNT(*) FROM history WHERE pending_since IS NOT NULL") == [(0,)]:
            return
        time.sleep(0.5)


def sample(pid: int) -> dict:
    """Return the process's resident memory (MB), threads and open files."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "threads": int(fields["Threads"]),
            "open_files": len(os.listdir(f"/proc/{pid}/fd"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--files", type=int, default=60, help="files per home (about 2 KB each)")
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the server, dumped after each round")
    args = parser.parse_args()
    server = start_server()
    if args.trace:  # restarted with tracing on
        server.stop()
        server.env = {"HOMESYNC_TRACEMALLOC": "8"}
        server.start()
    computers = []
    try:
        computers = enroll(server, args.computers, args.files)
        rows = [dict(round=0, failed=0, **sample(server.process.pid))]
        print(json.dumps(rows[-1]), flush=True)
        for n in range(1, args.rounds + 1):
            started = time.monotonic()
            failed = backup_round(computers, n)
            wait_for_checks(server)
            rows.append(dict(round=n, failed=failed, seconds=round(time.monotonic() - started, 1),
                             **sample(server.process.pid)))
            print(json.dumps(rows[-1]), flush=True)
            if args.trace:
                server.process.send_signal(signal.SIGUSR1)
                time.sleep(3)
        settled = [r["rss_mb"] for r in rows[2:]]
        print(json.dumps({"computers": args.computers, "rounds": args.rounds, "rss_mb": [r["rss_mb"] for r in rows],
                          "growth_after_round_2_mb": round(settled[-1] - settled[0], 1) if settled else None,
                          "failed": sum(r["failed"] for r in rows)}))
        if args.trace:
            print("".join(line for line in server.log.read_text().splitlines(True) if "memory" in line))
    finally:
        server.stop()
        remove(server.data.parent)
        for computer in computers:
            remove(computer.home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
