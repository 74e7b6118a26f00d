"""Driving the real `homesync agent` process in tests and benchmarks: run as the
unprivileged user against the real server, its configuration rewritten, its status
asked straight from its socket, its backups read from the server's index."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.homesync_client import Computer
from tests.support.homesync_server import RunningServer
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, private_dir, remove, run_as_user, user_env

CORPORATE = {"corporate_domains": ["corp.example.com"], "corporate_ssids": ["CorpWiFi"],
             "corporate_connections": ["Corp VPN"], "allow_metered": False}
# Short timings, so that the suite runs in minutes; the defaults are minutes and hours.
FAST = {"debounce": "0.5s", "min_interval": "1s", "settle_limit": "30s", "max_age": "1d",
        "retry_min": "2s", "retry_max": "10s", "min_battery_percent": 20, "recovery_point_target": "3d"}
SUCCESSFUL = ("success", "warning")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Return predicate()'s first true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


@dataclass
class Laptop:
    """An enrolled computer whose agent the test starts, asks and stops."""

    computer: Computer
    server: RunningServer
    env: dict[str, str]
    runtime_dir: Path
    machine_id: str = ""
    process: subprocess.Popen | None = None
    log: Path | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.computer.home

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "homesync" / "agent.sock"

    def configure(self, network: dict | None = None, agent: dict | None = None) -> None:
        """Rewrite config.toml's [network] and [agent] tables."""
        path = self.home / ".config/homesync/config.toml"
        config = tomllib.loads(path.read_text())
        config["network"] = dict(CORPORATE, **(network or {}))
        config["agent"] = dict(FAST, **(agent or {}))
        path.write_text("".join(f"[{section}]\n" + "".join(f"{key} = {json.dumps(value)}\n"
                                                            for key, value in table.items()) + "\n"
                                for section, table in config.items()))
        chown_tree(path.parent)

    def start(self, timeout: float = 60) -> None:
        """Start `homesync agent`; wait until it watches the tree and has decided once."""
        self.log = self.home.parent / f"{self.home.name}-agent-{len(self.logs)}.log"
        self.logs.append(self.log)
        demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []} if os.geteuid() == 0 else {}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(VENV_BIN / "homesync"), "agent"], cwd=self.home,
                                            env=user_env(self.home, **self.env), stdout=log,
                                            stderr=subprocess.STDOUT, **demote)

        def started() -> bool:
            if self.process.poll() is not None:
                return True
            status = self.ask()
            return bool(status) and status["state"] != "starting" and status["watcher"]["mode"] in ("inotify", "scan")
        wait_for(started, timeout, "the agent started")
        assert self.process.poll() is None, f"the agent exited with {self.process.returncode}:\n{self.log_text()}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def ask(self) -> dict | None:
        """Return the agent's status straight from its socket (cheap enough to poll), or None."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(self.socket))
                sock.sendall(b'{"op": "status"}\n')
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            return json.loads(data)["result"]
        except (OSError, ValueError, KeyError):
            return None

    def status(self, *args: str) -> subprocess.CompletedProcess:
        """Run `homesync status ARGS` as the user, in the agent's environment."""
        return run_as_user([str(VENV_BIN / "homesync"), "status", *args], self.home, **self.env)

    def status_json(self) -> dict:
        done = self.status("--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_status(self, predicate, timeout: float, what: str) -> dict:
        def check():
            status = self.ask()
            return status if status and predicate(status) else None
        return wait_for(check, timeout, what)

    def archives(self) -> list[tuple]:
        """Return this machine's (name, result, original size, deduplicated size) from the server's index."""
        return self.server.index_rows(
            "SELECT name, result, original_size, deduplicated_size FROM archives "
            f"WHERE machine_id = '{self.machine_id}' ORDER BY start")

    def successes(self) -> list[tuple]:
        return [a for a in self.archives() if a[1] in SUCCESSFUL]

    def agent_report(self) -> tuple[str, str]:
        return self.server.index_rows(
            f"SELECT agent_state, agent_reason FROM machines WHERE id = '{self.machine_id}'")[0]

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs if path.exists())


def enrolled_laptop(server: RunningServer, computer: Computer, bus_env: dict[str, str]) -> Laptop:
    """Enroll computer (joe's) and return its Laptop, configured for fast timings."""
    name = f"Laptop {computer.home.name}"
    assert computer.enroll(server, "joe", name).returncode == 0
    runtime_dir = private_dir("hs-run-")
    os.chmod(runtime_dir, 0o700)
    laptop = Laptop(computer, server, dict(bus_env, XDG_RUNTIME_DIR=str(runtime_dir)), runtime_dir)
    laptop.machine_id = computer.machine_id()  # the server may hold other tests' machines too
    laptop.configure()
    return laptop


def stop_and_clean(laptop: Laptop) -> str:
    """Stop the agent if it still runs (SIGTERM, then SIGKILL); remove its logs; return them."""
    if laptop.process is not None and laptop.process.poll() is None:
        laptop.process.send_signal(signal.SIGTERM)
        try:
            laptop.process.wait(60)
        except subprocess.TimeoutExpired:
            laptop.process.kill()
            laptop.process.wait()
    text = laptop.log_text()
    for log in laptop.logs:
        log.unlink(missing_ok=True)
    remove(laptop.runtime_dir)
    return text
