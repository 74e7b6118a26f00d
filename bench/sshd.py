"""A throwaway OpenSSH server for the baselines: /usr/sbin/sshd as root on a loopback
port, with its own config, host key and authorized key in a temporary directory
(never port 22, never /etc/ssh). The client key belongs to the benchmark's
unprivileged user, who logs in as root."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")


@dataclass
class OpenSshServer:
    """A running sshd and how a client reaches it."""

    directory: Path
    port: int
    client_key: Path
    process: subprocess.Popen
    cipher: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def ssh_command(self, with_port: bool) -> str:
        """Return the ssh command line for BORG_RSH (borg adds -p itself for ssh:// URLs
        with a port) or for rsync -e (with_port)."""
        argv = ["ssh", "-i", str(self.client_key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes"]
        if self.cipher:
            argv += ["-c", self.cipher]
        if with_port:
            argv += ["-p", str(self.port)]
        return shlex.join(argv)

    def negotiated(self) -> str:
        """Return the key exchange and cipher an ssh client ends up with here (ssh -v)."""
        done = subprocess.run(shlex.split(self.ssh_command(with_port=True)) + ["-v", "root@127.0.0.1", "true"],
                              capture_output=True, text=True, timeout=30)
        kex = cipher = "unknown"
        for line in done.stderr.splitlines():
            if "kex: algorithm:" in line:
                kex = line.split("algorithm:", 1)[1].strip()
            elif "kex: server->client cipher:" in line:
                cipher = line.split("cipher:", 1)[1].split()[0]
        return f"{kex}, {cipher}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(directory: Path, client_uid: int, cipher: str = "") -> OpenSshServer:
    """Start sshd from a fresh config in directory (created, root's); return it once it
    accepts connections. The caller stops it."""
    if os.geteuid() != 0:
        raise RuntimeError("the OpenSSH baseline needs root (sshd privilege separation)")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    host_key, client_key = directory / "host_ed25519", directory / "client_ed25519"
    _keygen(host_key, "homesync-bench-host")
    _keygen(client_key, "homesync-bench-client")
    os.chown(client_key, client_uid, -1)
    (directory / "authorized_keys").write_text((directory / "client_ed25519.pub").read_text())
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(f"""# throwaway sshd for homesync's benchmark
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
AuthorizedKeysFile {directory}/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 100:30:200
MaxSessions 100
LogLevel ERROR
""")
    log = open(directory / "sshd.log", "ab")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = OpenSshServer(directory, port, client_key, process, cipher)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {(directory / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("sshd did not start listening")
