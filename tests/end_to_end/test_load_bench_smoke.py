"""bench/load_bench.py run very small (2 computers through 2 nodes, 1 RPC client on
both engines), so that the bench cannot rot: every backup and report succeeds and the
figures it prints are there. 64–74 s on the shared 2-core VM at a load average of 12 (a
PostgreSQL cluster, five server starts, three enrollments, two backups and their checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench/load_bench.py"


def test_the_load_bench_runs_small(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH), "--computers", "2", "--files", "5", "--rounds", "two",
                           "--clients", "1", "--reports", "3", "--sessions", "1", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.rstrip().endswith('{"ok": true}')
    [path] = tmp_path.glob("load-*.json")
    results = json.loads(path.read_text())
    [round_] = results["load"]["rounds"]
    assert (round_["nodes"], round_["succeeded"], round_["failed"]) == (2, 2, 0)
    assert round_["p95_s"] > 0 and len(round_["servers"]) == 2
    assert all(s["settled"]["rss_mb"] > 0 and s["settled"]["open_fds"] > 0 for s in round_["servers"].values())
    assert [r["engine"] for r in results["rpc"]] == ["sqlite", "postgresql"]
    assert all(r["archives_indexed"] == 3 + 1 and r["held_session"]["per_s"] > 0 for r in results["rpc"])
    assert "2 nodes" in done.stdout and "rpc backup.report, postgresql" in done.stdout
