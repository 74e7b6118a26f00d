"""`homesync find` against the naive way (one `borg list` of every archive), in one run,
on the same repository: a generated home of many small files backed up N times through
the real server, a few files changed before each backup (each backup keeping the
computer's file catalog current, and its sealed copy on the server, in the background).
Shown: the naive way, the first find on the computer itself and on the user's other
computer (a password login), later finds, and finds after one new backup. Not part of `make bench` (the
30 backups of 100,000 files take minutes); run it on its own, as root:

    .venv/bin/python bench/find_bench.py                      # 100,000 files, 30 archives
    .venv/bin/python bench/find_bench.py --files 5000 --archives 5   # a sanity check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.homesync_client import Computer, catalogs_kept  # noqa: E402
from tests.support.homesync_server import PASSWORDS, start_server  # noqa: E402
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, remove, run_as_user  # noqa: E402

_NAIVE = """
import json, sys, time
from homesync import borg, config, link
paths = config.Paths.from_environment()
cfg = config.load(paths)
access = link.machine_repository(cfg, paths)
passphrase = paths.passphrase_file.read_bytes()
env = access.environment()
start = time.monotonic()
archives = borg.run_borg(borg.make_list_archives_command(access.location), env, passphrase).json["archives"]
hits = 0
for a in archives:
    lines = borg.run_borg(borg.make_list_files_command(access.location, a["name"]), env, passphrase,
                          stdout_lines=True).json["lines"]
    hits += sum(sys.argv[1].casefold() in i["path"].casefold() for i in lines)
print(json.dumps({"seconds": time.monotonic() - start, "archives": len(archives), "hits": hits}))
"""


def make_home(root: Path, files: int, seed: int) -> list[Path]:
    """Write `files` small files, 100 a folder, three levels deep; return their paths."""
    rng = random.Random(seed)
    made = []
    for n in range(files):
        folder = root / f"Documents/area-{n // 10000:02d}/project-{n // 100:04d}"
        if n % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"notes-{n:06d}.txt"
        path.write_bytes(rng.randbytes(rng.randint(50, 400)))
        made.append(path)
    return made


def change(files: list[Path], rng: random.Random, round_: int) -> None:
    """A little work between backups: 20 files rewritten, 5 new ones, given to the
    user one by one (a chown of the whole tree would give every file a new ctime, so
    borg would read them all again and every file would be a new version)."""
    touched = rng.sample(files, 20) + [files[0].parent / f"added-{round_:02d}-{k}.txt" for k in range(5)]
    for path in touched:
        path.write_bytes(rng.randbytes(rng.randint(50, 400)))
        os.chown(path, UNPRIVILEGED, UNPRIVILEGED)


def timed(computer: Computer, *args: str, input: str | None = None) -> tuple[float, object]:
    start = time.monotonic()
    done = computer.run(*args, input=input, timeout=3600)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"homesync {' '.join(args)} failed: {done.stderr.strip()}")
    return seconds, json.loads(done.stdout) if "--json" in args else None


def kept(computer: Computer, server, archives: int) -> float:
    """Wait until the background keeping after the backups is done; return the seconds waited."""
    start = time.monotonic()
    catalogs_kept(computer, server, archives, timeout=3600)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--archives", type=int, default=30)
    p.add_argument("--runs", type=int, default=3, help="runs of each find (median shown)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pattern", help="what find looks for (default: one file name, less its last digit)")
    args = p.parse_args(argv)
    args.pattern = args.pattern or f"notes-{args.files // 2:06d}"[:-1]
    work = Path(tempfile.mkdtemp(prefix="homesync-find-bench-", dir="/var/tmp"))
    os.chown(work, UNPRIVILEGED, UNPRIVILEGED)
    server = start_server({"joe": PASSWORDS["joe"]})
    results: dict = {"files": args.files, "archives": args.archives, "pattern": args.pattern,
                     "load_average_at_start": os.getloadavg()}
    try:
        computer = Computer(work / "home")
        computer.home.mkdir()
        other = Computer(work / "other")  # the user's other computer: a password login, no catalog of its own
        other.home.mkdir()
        chown_tree(other.home)
        print(f"writing {args.files} files", flush=True)
        files = make_home(computer.home, args.files, args.seed)
        chown_tree(computer.home)
        done = computer.enroll(server, "joe", "find bench")
        assert done.returncode == 0, done.stderr
        rng = random.Random(args.seed)
        backups, keeping = [], []
        for n in range(args.archives):
            if n:
                change(files, rng, n)
            seconds, _ = timed(computer, "backup", "--json")
            backups.append(seconds)
            # spaced as the agent spaces backups: the next one starts once this one's keeping is done
            keeping.append(kept(computer, server, n + 1))
            print(f"backup {n + 1}/{args.archives}: {seconds:.1f} s, kept {keeping[-1]:.1f} s later", flush=True)
        results["backup_seconds_median"] = statistics.median(backups)
        results["keeping_seconds_after_each_backup"] = {"median": statistics.median(keeping), "max": max(keeping)}
        results["keeping_done_after_last_backup"] = keeping[-1]
        copy = server.data / "repos" / computer.machine_id() / "homesync-files.catalog"
        results["catalog_bytes"] = (computer.home / f".cache/homesync/files/{computer.machine_id()}.catalog"
                                    ).stat().st_size
        results["sealed_copy_on_server_bytes"] = copy.stat().st_size
        print(f"catalog kept current {results['keeping_done_after_last_backup']:.1f} s after the last backup",
              flush=True)

        find = ("find", args.pattern, "--machine", "find bench", "--json")
        remote = (*other.remote_args(server, "joe"),)
        password = PASSWORDS["joe"] + "\n"
        first, rows = timed(computer, *find)
        results["find_first_here"] = {"seconds": first, "rows": len(rows)}
        print(f"first find on the computer itself (catalog kept current): {first:.2f} s, {len(rows)} rows",
              flush=True)
        first_other, other_rows = timed(other, *find, *remote, input=password)
        assert len(other_rows) == len(rows), (len(other_rows), len(rows))
        results["find_first_other_computer"] = {"seconds": first_other, "rows": len(other_rows)}
        print(f"first find on another computer (the server's sealed copy): {first_other:.2f} s", flush=True)
        warm = [timed(computer, *find)[0] for _ in range(args.runs)]
        results["find_later_here"] = {"median": statistics.median(warm), "runs": warm}
        warm_other = [timed(other, *find, *remote, input=password)[0] for _ in range(args.runs)]
        results["find_later_other_computer"] = {"median": statistics.median(warm_other), "runs": warm_other}
        print(f"later finds: here {warm}, other computer {warm_other}", flush=True)

        change(files, rng, args.archives)
        timed(computer, "backup", "--json")
        start = time.monotonic()  # the keeper holds the catalog's lock: the search leaves the new archive out
        done = computer.run(*find, timeout=3600)
        right_after = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        results["find_right_after_one_new_backup_here"] = right_after
        results["find_right_after_said_backups_missing"] = "still being added" in done.stderr
        results["keeping_done_after_that_backup"] = kept(computer, server, args.archives + 1)
        after_other, _ = timed(other, *find, *remote, input=password)
        results["find_after_one_new_backup_other_computer"] = after_other
        change(files, rng, args.archives + 1)
        timed(computer, "backup", "--json")
        kept(computer, server, args.archives + 2)
        settled, _ = timed(computer, *find)
        results["find_after_one_new_backup_kept_here"] = settled
        print(f"after one more backup: find right after it {right_after:.2f} s (without it, said: "
              f"{results['find_right_after_said_backups_missing']}), "
              f"once kept {settled:.2f} s; on the other computer {after_other:.2f} s", flush=True)
        glob = [timed(computer, "find", f"*-{args.pattern[6:-1]}??.txt", "--machine", "find bench", "--json")[0]
                for _ in range(args.runs)]
        results["find_glob_warm_median"] = statistics.median(glob)
        versions = [timed(computer, "versions", str(files[0].relative_to(computer.home)), "--json")[0]
                    for _ in range(args.runs)]
        results["versions_warm_median"] = statistics.median(versions)
        folder = [timed(computer, "versions", str(files[0].parent.relative_to(computer.home)), "--json")[0]
                  for _ in range(args.runs)]
        results["versions_of_a_folder_warm_median"] = statistics.median(folder)
        print(json.dumps(results), flush=True)  # what was measured so far, should the naive way take too long
        # last, on the same repository (then holding two archives more, each listed too)
        naive = run_as_user([str(VENV_BIN / "python"), "-c", _NAIVE, args.pattern], computer.home, timeout=7200)
        assert naive.returncode == 0, naive.stderr
        results["naive_borg_list_every_archive"] = json.loads(naive.stdout)
        print(f"naive: {results['naive_borg_list_every_archive']}", flush=True)
        results["load_average_at_end"] = os.getloadavg()
        print(json.dumps(results, indent=2))
    finally:
        server.stop()
        remove(server.data.parent)
        remove(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
