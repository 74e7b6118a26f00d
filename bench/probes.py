"""Fixed costs that every homesync command pays, measured on their own to explain the
gaps: starting the CLI's Python, opening a borg session through the paramiko shim
against the same through OpenSSH, one whole borg command through each (a restore
runs several), and one RPC session (what the backup report costs)."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from bench import measure
from bench.contenders import BORG, BorgOverSsh, Destination, Homesync
from bench.sshd import OpenSshServer
from homesync import shim
from tests.support.processes import VENV_BIN, user_env

logger = logging.getLogger("bench")


def _repeat(times: int, argv: list[str], env: dict, cwd: Path, server_pids: list[int]) -> dict:
    try:
        runs = [measure.run_timed(argv, env=env, cwd=cwd, server_pids=server_pids, timeout=120) for _ in range(times)]
    except measure.CommandFailed as e:
        logger.warning("probe failed: %s", e)
        return {"error": str(e)}
    summary = measure.summarize(runs)
    summary.pop("runs")
    return summary


def fixed_costs(homesync: Homesync, dest: Destination, borg: BorgOverSsh, borg_dest: Destination,
                sshd: OpenSshServer, times: int = 5) -> dict:
    """Return medians of each probe, by name."""
    home = dest.client_dir
    machine_id = dest.server_path.name
    port = homesync.server.address.rsplit(":", 1)[1]
    shim_env = user_env(home, **{shim.ENV_FINGERPRINT: homesync.server.fingerprint,
                                 shim.ENV_KEY_FILE: str(home / ".local/share/homesync/machine_key")})
    # borg as homesync runs it (through the shim), with a cache of its own
    borg_via_shim = dict(shim_env, BORG_RSH=shim.rsh_command(), BORG_BASE_DIR=str(home / "bench-borg"),
                         BORG_PASSPHRASE=(home / ".local/share/homesync/passphrase").read_text())
    shim_location = f"ssh://{machine_id}@127.0.0.1:{port}/./{machine_id}"
    ssh_argv = shlex.split(sshd.ssh_command(with_port=True))
    probes = {
        "homesync --help (CLI start-up)": ([str(VENV_BIN / "homesync"), "--help"], user_env(home), home,
                                           homesync.server_pids),
        "borg --version (borg start-up)": ([BORG, "--version"], user_env(home), home, []),
        "shim session, empty borg serve": ([sys.executable, "-m", "homesync.shim", "-p", port,
                                            f"{machine_id}@127.0.0.1", "borg", "serve"], shim_env, home,
                                           homesync.server_pids),
        "ssh session, empty borg serve": ([*ssh_argv, "root@127.0.0.1", BORG, "serve"], user_env(home), home,
                                          [sshd.pid]),
        "borg list through the shim": ([BORG, "list", "--json", shim_location], borg_via_shim, home,
                                       homesync.server_pids),
        "borg list through ssh": ([BORG, "list", "--json", "--remote-path", BORG, borg_dest.location],
                                  borg.environment(borg_dest), borg_dest.client_dir, [sshd.pid]),
        "homesync archives (session + 1 RPC)": ([str(VENV_BIN / "homesync"), "archives", "--json"], user_env(home),
                                                home, homesync.server_pids),
    }
    return {name: _repeat(times, *spec) for name, spec in probes.items()}
