"""Timing one command of a contender: wall time, the CPU of the client processes
(getrusage of reaped children), the CPU the server side spent meanwhile, a sampled
per-process breakdown of both, and how busy the rest of the machine was."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

TICK = os.sysconf("SC_CLK_TCK")
NOBODY = 65534
SAMPLE_SECONDS = 0.1


@dataclass
class Measurement:
    """One timed command."""

    wall: float
    client_cpu: float
    server_cpu: float
    breakdown: dict[str, float] = field(default_factory=dict)  # label -> CPU seconds (sampled)
    background_cpu: float = 0.0  # CPU seconds used by processes that are not ours
    output: str = ""
    items: int | None = None  # files the tool says it backed up, when it says so
    load: float = 0.0  # the 1-minute load average when the command started
    usable: float | None = None  # a restore: seconds until settings and documents were merged
    details: dict = field(default_factory=dict)  # what the tool said of its own steps (homesync's timings)


class CommandFailed(RuntimeError):
    pass


def _stat(pid: int | str) -> tuple[int, int, int, int, int, int] | None:
    """Return (ppid, starttime, utime, stime, cutime, cstime) in ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[19]), int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _cmdline(pid: int | str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def label(argv: list[str]) -> str:
    """Given a process's argv, return what it is in the benchmark's words."""
    text = " ".join(argv[:4])
    first = os.path.basename(argv[0]) if argv else ""
    second = os.path.basename(argv[1]) if len(argv) > 1 else ""
    if "homesync.shim" in text:
        return "homesync shim (paramiko client)"
    if "homesync-server" in text:
        return "homesync-server (paramiko, RPC)"
    if second == "homesync" or first == "homesync":
        return "homesync CLI (python)"
    if second == "borg" or first == "borg":
        return "borg serve" if "serve" in argv[1:4] else "borg client"
    if first.startswith("sshd") or text.startswith("sshd"):
        return "sshd"
    if first == "ssh":
        return "ssh client"
    if first == "rsync":
        return "rsync (server side)" if "--server" in argv else "rsync client"
    return first or "?"


def system_busy_ticks() -> int:
    """Return the ticks all CPUs have spent not idle since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle


class ProcessSampler:
    """Samples /proc while a command runs and attributes the CPU of the descendants of
    the benchmark and of the server processes to labels. Short processes can be missed
    and the last ~0.1 s of each is: the totals come from rusage, this is a breakdown."""

    def __init__(self, roots: Sequence[int]) -> None:
        self.roots = set(roots) | {os.getpid()}
        self.start: dict[tuple[int, int], int] = {}
        self.last: dict[tuple[int, int], int] = {}
        self.labels: dict[tuple[int, int], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ProcessSampler":
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        table = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(entry)
                if st:
                    table[int(entry)] = st
        for pid, (ppid, started, utime, stime, _, _) in table.items():
            key = (pid, started)
            if key not in self.labels and not self._ours(pid, table):
                continue
            argv = _cmdline(pid)  # every time: a shell may have exec'd its command since
            if argv or key not in self.labels:
                self.labels[key] = label(argv)
            if first:
                self.start[key] = utime + stime
            self.last[key] = utime + stime

    def _ours(self, pid: int, table: dict) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in self.roots:
                return True
            pid = table[pid][0] if pid in table else 1
            seen += 1
        return False

    def breakdown(self) -> dict[str, float]:
        """Return CPU seconds by label over the sampled window (the bench itself left out)."""
        out: dict[str, float] = {}
        for key, ticks in self.last.items():
            if key[0] == os.getpid():
                continue
            used = ticks - self.start.get(key, 0)
            if used > 0:
                out[self.labels[key]] = out.get(self.labels[key], 0.0) + used / TICK
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _process_total(pid: int) -> int:
    st = _stat(pid)
    return sum(st[2:]) if st else 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st and st[0] == pid:
                found.append(int(entry))
    return found


def wait_idle(pids: Sequence[int], timeout: float = 30.0) -> None:
    """Wait until none of the server processes has a child left (every session's borg
    serve, sshd session or rsync has ended and was reaped)."""
    deadline = time.monotonic() + timeout
    while any(_children(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def run_timed(argv: Sequence[str], *, env: dict[str, str], cwd: Path, server_pids: Sequence[int],
              timeout: float, user: int | None = NOBODY) -> Measurement:
    """Run argv (as the unprivileged user) and return its measurement; raise
    CommandFailed with the end of its stderr unless it exits with 0 or 1 (a warning)."""
    wait_idle(server_pids)
    os.sync()  # the previous step's dirty pages are not this one's to write
    before_server = sum(_process_total(p) for p in server_pids)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_busy = system_busy_ticks()
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    demote = {"user": user, "group": user, "extra_groups": []} if user is not None and os.geteuid() == 0 else {}
    load = os.getloadavg()[0]
    with ProcessSampler(server_pids) as sampler:
        started = time.monotonic()
        done = subprocess.run(list(argv), env=env, cwd=str(cwd), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, **demote)
        wall = time.monotonic() - started
        wait_idle(server_pids)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    own_cpu = after_self.ru_utime - before_self.ru_utime + after_self.ru_stime - before_self.ru_stime
    server_cpu = (sum(_process_total(p) for p in server_pids) - before_server) / TICK
    busy = (system_busy_ticks() - before_busy) / TICK
    if done.returncode not in (0, 1):
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise CommandFailed(f"{' '.join(argv[:3])} … failed with rc {done.returncode}:\n{tail}")
    client_cpu = (after_children.ru_utime - before_children.ru_utime
                  + after_children.ru_stime - before_children.ru_stime)
    return Measurement(wall=wall, client_cpu=client_cpu, server_cpu=server_cpu,
                       breakdown=sampler.breakdown(), background_cpu=max(0.0, busy - client_cpu - server_cpu - own_cpu),
                       output=done.stdout, load=load)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: Sequence[Measurement]) -> dict:
    """Return the medians and the individual runs of a list of measurements."""
    labels = sorted({k for m in runs for k in m.breakdown})
    return {
        "wall": median([m.wall for m in runs]),
        "wall_range": [min(m.wall for m in runs), max(m.wall for m in runs)] if runs else None,
        "client_cpu": median([m.client_cpu for m in runs]),
        "server_cpu": median([m.server_cpu for m in runs]),
        "background_cpu": median([m.background_cpu for m in runs]),
        "cpu_breakdown": {k: median([m.breakdown.get(k, 0.0) for m in runs]) for k in labels},
        "files_reported": runs[-1].items if runs else None,
        "load": median([m.load for m in runs]),
        "usable": median([m.usable for m in runs]) if runs and all(m.usable is not None for m in runs) else None,
        "runs": [{"wall": round(m.wall, 3), "client_cpu": round(m.client_cpu, 3), "server_cpu": round(m.server_cpu, 3),
                  "background_cpu": round(m.background_cpu, 2), "load": round(m.load, 2), "usable": m.usable,
                  "details": m.details,
                  "cpu_breakdown": {k: round(v, 2) for k, v in m.breakdown.items()}} for m in runs],
    }


def tree_bytes(root: Path) -> tuple[int, int, int]:
    """Return (files, apparent bytes, allocated bytes) of the regular files under root."""
    files = apparent = allocated = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_mode & 0o170000) == 0o100000:
                files += 1
                apparent += st.st_size
                allocated += st.st_blocks * 512
    return files, apparent, allocated
