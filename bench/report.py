"""The benchmark's results: ratios (homesync ÷ each baseline), the machine it ran on,
the JSON file, and the table printed on stdout."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from tests.support.processes import VENV_BIN

HOMESYNC, BASELINES = "homesync", ("borg_ssh", "rsync_ssh")
TITLES = {"homesync": "homesync", "borg_ssh": "borg+OpenSSH", "rsync_ssh": "rsync+OpenSSH"}
SCENARIOS = {
    "full_backup": "full backup",
    "nochange_backup": "no-change backup",
    "incremental_backup": "after a day of work",
    "restore": "restore (latest)",
    "small_files_full": "small: first (1 run)",
    "small_files_nochange": "small: no-change",
    "small_files_restore": "small: restore",
    "large_full": "large: first (1 run)",
    "large_restore": "large: restore",
}
RESTORES = {"restore": "default home", "small_files_restore": "small files", "large_restore": "large home"}
METRICS = (("wall", "wall s"), ("client_cpu", "client CPU s"), ("server_cpu", "server CPU s"))


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _stored_mb(summary: dict) -> float | None:
    stored = summary.get("stored")
    return stored["bytes"] / 1e6 if stored else None


def add_ratios(scenario: dict) -> dict:
    """Given {contender: summary} for one scenario, add "ratios": homesync ÷ baseline for
    wall time, client CPU, server CPU, total CPU and stored bytes."""
    mine = scenario.get(HOMESYNC)
    ratios = {}
    for base in BASELINES:
        other = scenario.get(base)
        if not (mine and other):
            continue
        ratios[f"homesync/{base}"] = {
            "wall": _ratio(mine["wall"], other["wall"]),
            "client_cpu": _ratio(mine["client_cpu"], other["client_cpu"]),
            "server_cpu": _ratio(mine["server_cpu"], other["server_cpu"]),
            "total_cpu": _ratio(mine["client_cpu"] + mine["server_cpu"], other["client_cpu"] + other["server_cpu"]),
            "stored_bytes": _ratio(_stored_mb(mine), _stored_mb(other)),
        }
    scenario["ratios"] = ratios
    return scenario


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def machine_info() -> dict:
    """Return what the results depend on: CPU, memory, kernel, tool versions, the code."""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    mem = next((int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    import paramiko
    repo = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "aes_ni": "aes" in flags, "sha_ni": "sha_ni" in flags,
        "memory_bytes": mem, "kernel": platform.release(), "python": platform.python_version(),
        "borg": _first_line([str(VENV_BIN / "borg"), "--version"]), "paramiko": paramiko.__version__,
        "openssh": _first_line(["ssh", "-V"]), "rsync": _first_line(["rsync", "--version"]),
        "homesync_commit": commit + (" (with uncommitted changes)" if dirty.strip() else ""),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def write_json(results: dict, directory: Path, stamp: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def _cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "ratio":
        return f"{value:.2f}"
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def table(results: dict) -> str:
    """Return the human-readable results: one block of rows per scenario."""
    opts, data = results["options"], results["data"]
    lines = [f"homesync benchmark {results['started']}  ({results['machine']['nproc']} CPUs, "
             f"{results['machine']['cpu_model']}; {results['machine']['borg']}, paramiko "
             f"{results['machine']['paramiko']})"]
    home = data.get("home")
    if home:
        lines.append(f"home: {home['files']} files, {home['bytes'] / 1e6:.0f} MB generated "
                     f"({home['backed_up_files']} files, {home['backed_up_bytes'] / 1e6:.0f} MB backed up)"
                     + (f"; small files: {data['small']['files']} files, {data['small']['bytes'] / 1e6:.0f} MB"
                        if data.get("small") else ""))
    full = results["scenarios"].get("full_backup", {})
    counted = {TITLES[c]: full[c].get("files_reported") for c in (HOMESYNC, "borg_ssh") if c in full}
    if counted:
        lines.append("files in each archive (as the tools report them): "
                     + ", ".join(f"{name} {n}" for name, n in counted.items()))
    lines.append(f"OpenSSH baseline: {results['machine'].get('openssh_kex_cipher', '?')}; homesync (paramiko) prefers "
                 f"{results['machine'].get('homesync_cipher_preferred', '?')}")
    lines.append(f"medians of {opts['runs']} runs; ratios are homesync ÷ baseline (below 1: homesync is faster)")
    header = f"{'':24}{'':15}" + "".join(f"{TITLES[c]:>15}" for c in (HOMESYNC, *BASELINES)) + \
        f"{'hs÷borg':>10}{'hs÷rsync':>10}"
    lines += ["", header, "-" * len(header)]
    for key, title in SCENARIOS.items():
        scenario = results["scenarios"].get(key)
        if not scenario:
            continue
        rows = [(m, label) for m, label in METRICS] + [("stored", "stored MB")]
        for i, (metric, label) in enumerate(rows):
            if metric == "stored":
                if key in RESTORES:
                    continue
                values = {c: _stored_mb(scenario[c]) if c in scenario else None for c in (HOMESYNC, *BASELINES)}
                ratio_key = "stored_bytes"
            else:
                values = {c: scenario[c][metric] if c in scenario else None for c in (HOMESYNC, *BASELINES)}
                ratio_key = metric
            ratios = [scenario["ratios"].get(f"homesync/{b}", {}).get(ratio_key) for b in BASELINES]
            lines.append(f"{title if i == 0 else '':24}{label:15}"
                         + "".join(f"{_cell(values[c]):>15}" for c in (HOMESYNC, *BASELINES))
                         + "".join(f"{_cell(r, 'ratio'):>10}" for r in ratios))
            if metric == "wall" and opts["runs"] > 1 and key not in ("small_files_full", "large_full"):
                spans = {c: scenario[c]["wall_range"] if c in scenario else None for c in (HOMESYNC, *BASELINES)}
                lines.append(f"{'':24}{'  min–max':15}" + "".join(
                    f"{(f'{s[0]:.2f}–{s[1]:.2f}' if s else '–'):>15}" for s in spans.values()))
        lines.append("")
    lines += _restores(results)
    lines += _breakdown(results)
    lines += _probes(results)
    lines.append(f"total benchmark time {results.get('seconds', 0):.0f} s; "
                 f"other processes on this machine used a median {results.get('background_cpu_median', 0):.2f} "
                 f"CPU-s per measurement")
    if results.get("error"):
        lines.append(f"STOPPED EARLY: {results['error']}")
    return "\n".join(lines)


def _restores(results: dict) -> list[str]:
    """Return the restore figures the issue asks for: homesync ÷ borg extract over
    OpenSSH per data set, when the home was usable, and the load beside each."""
    lines = [f"restore ÷ borg extract over OpenSSH (medians of {results['options']['runs']}; "
             f"{results['machine']['nproc']} CPUs; restore jobs {results['options'].get('restore_jobs', 'auto')}):"]
    for key, title in RESTORES.items():
        scenario = results["scenarios"].get(key)
        if not scenario or HOMESYNC not in scenario or "borg_ssh" not in scenario:
            continue
        mine, borg = scenario[HOMESYNC], scenario["borg_ssh"]
        ratio = scenario.get("ratios", {}).get("homesync/borg_ssh", {}).get("wall")
        usable = f"usable after {mine['usable']:.2f} s, " if mine.get("usable") is not None else ""
        lines.append(f"  {title:14} {_cell(ratio, 'ratio'):>5}  homesync {mine['wall']:.2f} s ({usable}"
                     f"total) vs borg {borg['wall']:.2f} s; load average {mine.get('load', 0):.2f} / "
                     f"{borg.get('load', 0):.2f}")
    return lines + [""] if len(lines) > 1 else []


def _breakdown(results: dict) -> list[str]:
    lines = ["CPU seconds by process (sampled every 0.1 s; medians):"]
    for key, title in SCENARIOS.items():
        scenario = results["scenarios"].get(key)
        if not scenario:
            continue
        for contender in (HOMESYNC, "borg_ssh"):
            parts = scenario.get(contender, {}).get("cpu_breakdown", {})
            shown = ", ".join(f"{name} {seconds:.2f}" for name, seconds in parts.items() if seconds >= 0.05)
            lines.append(f"  {title:24}{TITLES[contender]:14}{shown}")
    return lines + [""]


def _probes(results: dict) -> list[str]:
    probes = results.get("probes")
    if not probes:
        return []
    lines = ["fixed costs (medians of 5):"]
    for name, summary in probes.items():
        if "error" in summary:
            lines.append(f"  {name:40}failed: {summary['error'].splitlines()[0]}")
            continue
        lines.append(f"  {name:40}{summary['wall']:6.2f} s wall {summary['client_cpu']:6.2f} s client CPU "
                     f"{summary['server_cpu']:6.2f} s server CPU")
    return lines + [""]
