"""The index migration benchmark (issue 13): a SQLite index of 1,000 machines, 30,000
archives and 100,000 audit events, written through the index's own interface, then
`homesync-server index migrate --to postgresql://…` into a throwaway cluster and
`audit verify` on the copy, each timed as the admin runs it (a fresh process).

    .venv/bin/python bench/index_migrate_bench.py [--machines 1000] [--archives 30] [--events 100000]

Run as root (the cluster runs as nobody, like the tests' one).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from homesync_server import index_store  # noqa: E402
from homesync_server.actions import setup  # noqa: E402
from homesync_server.config import Layout  # noqa: E402
from tests.support.postgres import Cluster  # noqa: E402

HOMESYNC_SERVER = Path(sys.executable).parent / "homesync-server"


def build(layout: Layout, machines: int, archives: int, events: int) -> float:
    """Fill the data directory's SQLite index through the interface; return the seconds it took."""
    started = time.monotonic()
    setup.init(layout, "127.0.0.1:1")
    index = index_store.open_index(layout)
    try:
        for m in range(machines):
            owner, machine_id = f"user{m // 4:05d}", f"{m:016x}"
            index.record_user(owner)
            rows = [{"name": f"{machine_id}-{a:04d}", "start": 1e9 + a * 3600, "end": 1e9 + a * 3600 + 60,
                     "files": 1000 + a, "original_size": 10 ** 9, "compressed_size": 9 * 10 ** 8,
                     "deduplicated_size": 10 ** 6, "result": "success", "observed": 1e9 + a * 3600 + 60}
                    for a in range(archives)]
            index.import_machine({"id": machine_id, "owner": owner, "name": f"machine {m}", "hostname": f"h{m}",
                                  "public_key": f"ssh-ed25519 K{m}", "enrolled": 1e9, "last_seen": 1e9,
                                  "state": "active"}, f"machine {m}", rows)
        for n in range(events):
            index.audit("backup", f"user{(n % machines) // 4:05d}", f"{n % machines:016x}", "10.0.0.1", n=n)
    finally:
        index.close()
    return time.monotonic() - started


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run([str(HOMESYNC_SERVER), *args], capture_output=True, text=True)
    return time.monotonic() - started, done


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--archives", type=int, default=30)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="homesync-migrate-bench-") as tmp:
        layout = Layout(Path(tmp) / "data")
        built = build(layout, args.machines, args.archives, args.events)
        cluster = Cluster()
        try:
            url = cluster.new_database()
            migrate_s, moved = timed("index", "migrate", "--to", url, "--data", str(layout.data), "--json")
            if moved.returncode != 0:
                print(moved.stderr, file=sys.stderr)
                return 1
            result = json.loads(moved.stdout)
            verify_sqlite_s, _ = timed("audit", "verify", "--data", str(layout.data))
            layout.config_file.write_text(layout.config_file.read_text() + f'\n[index]\nurl = "{url}"\n')
            verify_pg_s, verified = timed("audit", "verify", "--data", str(layout.data))
        finally:
            cluster.close()
    print(json.dumps({"machines": args.machines, "archives": args.machines * args.archives,
                      "events": result["tables"]["audit"], "build_seconds": round(built, 1),
                      "migrate_seconds": round(migrate_s, 2), "copy_seconds": result["seconds"],
                      "counts_equal": result["counts_equal"], "audit_intact_after": result["audit"]["intact"],
                      "audit_verify_sqlite_seconds": round(verify_sqlite_s, 2),
                      "audit_verify_postgresql_seconds": round(verify_pg_s, 2),
                      "audit_verify_postgresql_exit": verified.returncode}, indent=2))
    return 0 if result["counts_equal"] and verified.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
