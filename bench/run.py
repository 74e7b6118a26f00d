"""homesync's benchmark (`make bench`): homesync against raw borg over OpenSSH and
rsync over OpenSSH, side by side on the same generated data, in one run. Writes
bench/results/<timestamp>.json and prints a table; see bench/README.md."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import data, measure, probes, report, scenarios, sshd  # noqa: E402
from bench.contenders import BorgOverSsh, Homesync, RsyncOverSsh, client_dir  # noqa: E402
from homesync import transport  # noqa: E402
from tests.support.homesync_server import PASSWORDS, start_server  # noqa: E402
from tests.support.processes import remove  # noqa: E402

logger = logging.getLogger("bench")
PARTS = ("nochange", "incremental", "restore", "small", "probes")
CASES = ("home", "small", "large")  # the data sets: the default home, many small files, a 1.5 GB home
DEFAULTS = {"size": 500 << 20, "files": 10_000, "small_files": 30_000, "large_size": 1536 << 20,
            "large_files": 30_000, "runs": 3}
QUICK = {"size": 100 << 20, "files": 2_000, "small_files": 5_000, "large_size": 300 << 20, "large_files": 6_000,
         "runs": 3}


def parse_size(text: str) -> int:
    """Given "500", "500M", "1.5G" or "800K", return bytes (a bare number is MB)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text) * units["M"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py",
                                description="homesync against raw borg and rsync over OpenSSH, on the same data.")
    p.add_argument("--size", type=parse_size, help="bytes of the generated home: 500M by default, 100M with --quick")
    p.add_argument("--files", type=int, help="files in the generated home: 10000 by default, 2000 with --quick")
    p.add_argument("--small-files", type=int, help="files of 1-8 KB in the small-files tree: 30000 (--quick 5000)")
    p.add_argument("--large-size", type=parse_size, help="bytes of the large home: 1.5G by default (--quick 300M)")
    p.add_argument("--large-files", type=int, help="files in the large home: 30000 by default (--quick 6000)")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated data sets to run: {', '.join(CASES)} (default: all; e.g. --cases large)")
    p.add_argument("--restore-jobs", default="",
                   help="pass --jobs N to `homesync restore` (default: its own choice)")
    p.add_argument("--runs", type=int, help="runs of each measurement, medians reported (default 3)")
    p.add_argument("--quick", action="store_true", help="a small sanity-check run (~100 MB)")
    p.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    p.add_argument("--ssh-cipher", default="", help="cipher for the OpenSSH baselines (default: OpenSSH's own)")
    p.add_argument("--workdir", default="/var/tmp", help="where the data, repositories and restores go")
    p.add_argument("--output", default=str(REPO / "bench" / "results"), help="directory for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the work directory (data, repositories) afterwards")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PARTS)
    if unknown:
        p.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    args.cases = {s.strip() for s in args.cases.split(",") if s.strip()}
    if not args.cases or args.cases - set(CASES):
        p.error(f"--cases: choose from {', '.join(CASES)}")
    if "small" in args.skip:
        args.cases.discard("small")
    if args.runs < 1 or args.files < 60 or args.size < (1 << 20):
        p.error("--runs must be ≥ 1, --files ≥ 60, --size ≥ 1M")
    return args


def run(args: argparse.Namespace, results: dict, work: Path, stack: list) -> None:
    """Generate the data, start both servers, run every scenario of the chosen cases
    into results; push what must be undone onto stack."""
    timeout = 600 + max(args.size, args.large_size) / 1e6 * 2
    server = start_server({"joe": PASSWORDS["joe"]})
    stack.append(lambda: (server.stop(), remove(server.data.parent)))
    ssh = sshd.start(work / "sshd", measure.NOBODY, args.ssh_cipher)
    stack.append(ssh.stop)
    results["machine"]["openssh_kex_cipher"] = ssh.negotiated()
    results["machine"]["homesync_cipher_preferred"] = transport.PREFERRED_CIPHERS[0]
    server_side = work / "server-side"
    server_side.mkdir(mode=0o700)
    clients = work / "clients"
    clients.mkdir()
    homesync = Homesync(server, clients, timeout)
    if args.restore_jobs:
        homesync.restore_args = ("--jobs", args.restore_jobs)
    contenders = [homesync, BorgOverSsh(ssh, server_side / "borg", clients, timeout),
                  RsyncOverSsh(ssh, server_side / "rsync", client_dir(clients, "rsync-"), timeout)]
    into = work / "restores"
    into.mkdir()
    if "home" in args.cases:
        _home_case(args, results, work, stack, contenders, ssh, into)
    if "small" in args.cases:
        _small_case(args, results, work, stack, contenders, into)
    if "large" in args.cases:
        _large_case(args, results, work, stack, contenders, into)


def _home_case(args, results: dict, work: Path, stack: list, contenders: list, ssh, into: Path) -> None:
    """The default home: full, no-change and day-of-work backups, restores, fixed costs."""
    logger.info("generating a home of %d files, %.0f MB", args.files, args.size / 1e6)
    home = data.generated_home(work / "home", args.seed, args.files, args.size)
    results["data"]["home"] = home.as_json()
    found = results["scenarios"]
    found["full_backup"], dests = scenarios.full_backup(contenders, home.path, args.runs)
    stack.append(lambda: [c.discard(dests[c.name]) for c in contenders])
    if "nochange" not in args.skip:
        found["nochange_backup"] = scenarios.again(contenders, dests, args.runs, "no-change")
    if "incremental" not in args.skip:
        found["incremental_backup"] = scenarios.again(contenders, dests, args.runs, "day of work",
                                                      scenarios.day_of_work(home.path, args.seed))
    if "restore" not in args.skip:
        found["restore"] = scenarios.restore(contenders, dests, args.runs, into)
    if "probes" not in args.skip:
        logger.info("measuring fixed costs")
        results["probes"] = probes.fixed_costs(contenders[0], dests["homesync"], contenders[1], dests["borg_ssh"],
                                               ssh)
    for c in contenders:
        c.discard(dests[c.name])
    shutil.rmtree(home.path, ignore_errors=True)


def _small_case(args, results: dict, work: Path, stack: list, contenders: list, into: Path) -> None:
    """Many small files: one first backup, no-change backups, restores."""
    logger.info("generating %d small files", args.small_files)
    small = data.small_files(work / "small", args.seed, args.small_files)
    results["data"]["small"] = small.as_json()
    found = results["scenarios"]
    found["small_files_full"], dests = scenarios.full_backup(contenders, small.path, 1, "small")
    stack.append(lambda: [c.discard(dests[c.name]) for c in contenders])
    found["small_files_nochange"] = scenarios.again(contenders, dests, args.runs, "small no-change")
    if "restore" not in args.skip:
        found["small_files_restore"] = scenarios.restore(contenders, dests, args.runs, into, "small restore")
    for c in contenders:
        c.discard(dests[c.name])
    shutil.rmtree(small.path, ignore_errors=True)


def _large_case(args, results: dict, work: Path, stack: list, contenders: list, into: Path) -> None:
    """A large home: one first backup, then restores."""
    logger.info("generating a large home of %d files, %.0f MB", args.large_files, args.large_size / 1e6)
    large = data.generated_home(work / "large", args.seed + 1, args.large_files, args.large_size)
    results["data"]["large"] = large.as_json()
    found = results["scenarios"]
    found["large_full"], dests = scenarios.full_backup(contenders, large.path, 1, "large")
    stack.append(lambda: [c.discard(dests[c.name]) for c in contenders])
    found["large_restore"] = scenarios.restore(contenders, dests, args.runs, into, "large restore")
    for c in contenders:
        c.discard(dests[c.name])
    shutil.rmtree(large.path, ignore_errors=True)


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if os.geteuid() != 0:
        print("bench/run.py: run it as root (it starts sshd and runs the clients as nobody)", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly, even if started with SIGINT ignored
        signal.signal(sig, _interrupted)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    started = time.monotonic()
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": [sys.argv[0], *(argv or sys.argv[1:])],
               "options": {"size": args.size, "files": args.files, "small_files": args.small_files, "runs": args.runs,
                           "large_size": args.large_size, "large_files": args.large_files,
                           "cases": sorted(args.cases), "restore_jobs": args.restore_jobs or "auto",
                           "quick": args.quick, "skip": sorted(args.skip), "seed": args.seed,
                           "ssh_cipher": args.ssh_cipher or "OpenSSH default"},
               "machine": report.machine_info(), "data": {}, "scenarios": {}}
    work = Path(tempfile.mkdtemp(prefix="homesync-bench-", dir=args.workdir))
    os.chmod(work, 0o755)
    cleanups: list = []
    try:
        run(args, results, work, cleanups)
    except KeyboardInterrupt:
        results["error"] = "interrupted"
    except Exception as e:  # keep what was measured; say what went wrong
        traceback.print_exc()
        results["error"] = f"{type(e).__name__}: {e}"
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as e:
                logger.warning("cleanup failed: %s", e)
        if args.keep:
            logger.info("kept the work directory %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    for scenario in results["scenarios"].values():
        report.add_ratios(scenario)
    background = [r["background_cpu"] for s in results["scenarios"].values() for c, v in s.items()
                  if c != "ratios" for r in v["runs"]]
    results["background_cpu_median"] = measure.median(background) if background else 0.0
    results["seconds"] = round(time.monotonic() - started, 1)
    path = report.write_json(results, Path(args.output), stamp)
    print(report.table(results))
    print(f"\nresults: {path}")
    return 1 if results.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
