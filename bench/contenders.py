"""The three things compared: homesync (enrolled computer → real homesync-server on
loopback), raw borg over OpenSSH, and rsync -a over the same OpenSSH. Each makes a
fresh destination for a source, backs it up into it, restores from it and says how
many bytes the server side holds; every client command runs as the unprivileged user."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench import measure
from bench.measure import Measurement
from bench.sshd import OpenSshServer
from homesync import borg as homesync_borg
from homesync import config as homesync_config
from tests.support.homesync_client import Computer
from tests.support.homesync_server import RunningServer
from tests.support.processes import VENV_BIN, remove, user_env

BORG = str(VENV_BIN / "borg")


def client_dir(parent: Path, prefix: str) -> Path:
    """Return a new directory under parent for a client's own state (HOME, borg cache),
    owned by the unprivileged user; it goes with the benchmark's work folder."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chown(path, measure.NOBODY, measure.NOBODY)
    return path


@dataclass
class Destination:
    """Where one contender keeps the backups of one source."""

    contender: str
    source: Path
    label: str
    location: str                      # repository URL, machine name or rsync target
    server_path: Path                  # what the server side stores, for its size
    client_dir: Path | None = None     # the client's own state (HOME, borg cache)
    archives: list[str] = field(default_factory=list)


class Contender:
    """What the three have in common: a destination is discarded with the client's
    state and what the server side stores."""

    def discard(self, dest: Destination) -> None:
        if dest.client_dir is not None:
            remove(dest.client_dir)
        shutil.rmtree(dest.server_path, ignore_errors=True)


class BehindSshd(Contender):
    """A contender whose server side is the throwaway sshd: it keeps what it stores under
    `store` and its clients' own state under `clients`."""

    def __init__(self, sshd: OpenSshServer, store: Path, clients: Path, timeout: float) -> None:
        self.sshd = sshd
        self.store = store
        self.clients = clients
        self.timeout = timeout

    @property
    def server_pids(self) -> list[int]:
        return [self.sshd.pid]


class Homesync(Contender):
    """`homesync backup` / `homesync restore` as an enrolled computer."""

    name = "homesync"
    title = "homesync"

    def __init__(self, server: RunningServer, clients: Path, timeout: float) -> None:
        self.server = server
        self.clients = clients
        self.timeout = timeout
        self.restore_args: tuple[str, ...] = ()

    @property
    def server_pids(self) -> list[int]:
        return [self.server.process.pid]

    def fresh(self, source: Path, label: str) -> Destination:
        """Enroll a new computer whose backup source is `source` (a new repository)."""
        computer = Computer(client_dir(self.clients, "computer-"))
        done = computer.enroll(self.server, "joe", f"bench {label}")
        if done.returncode != 0:
            raise measure.CommandFailed(f"homesync enroll failed: {done.stderr.strip()}")
        config_file = computer.home / ".config/homesync/config.toml"
        text = _with_source(config_file.read_text(), source)
        config_file.write_text(text)
        machine_id = tomllib.loads(text)["machine"]["id"]
        return Destination(self.name, source, label, f"bench {label}", self.server.data / "repos" / machine_id,
                           client_dir=computer.home)

    def backup(self, dest: Destination) -> Measurement:
        m = self._run(dest, "backup", "--json")
        m.items = json.loads(m.output)["files"]
        dest.archives.append("latest")
        return m

    def restore(self, dest: Destination, into: Path) -> Measurement:
        m = self._run(dest, "restore", "--machine", dest.location, "--target", str(into), "--json", *self.restore_args)
        result = json.loads(m.output)
        m.usable = result.get("usable_seconds")
        m.details = {"seconds": result.get("seconds"), "jobs": result.get("jobs"), "timings": result.get("timings")}
        return m

    def _run(self, dest: Destination, *args: str) -> Measurement:
        return measure.run_timed([str(VENV_BIN / "homesync"), *args], env=user_env(dest.client_dir),
                                 cwd=dest.client_dir, server_pids=self.server_pids, timeout=self.timeout)


def _with_source(config: str, source: Path) -> str:
    """Given the config.toml enrollment wrote, return it with [backup] source = source."""
    line = f"source = {json.dumps(str(source))}"  # a JSON string is a TOML basic string
    if "[backup]\n" in config:
        config = config.replace("[backup]\n", f"[backup]\n{line}\n", 1)
    else:
        config += f"\n[backup]\n{line}\n"
    if tomllib.loads(config).get("backup", {}).get("source") != str(source):
        raise measure.CommandFailed("could not set [backup] source in the enrolled computer's config.toml")
    return config


class BorgOverSsh(BehindSshd):
    """`borg create` / `borg extract` to a repository served by the throwaway sshd, with
    homesync's encryption mode, compression and exclusions."""

    name = "borg_ssh"
    title = "borg+OpenSSH"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.passphrase = secrets.token_hex(32)

    def fresh(self, source: Path, label: str) -> Destination:
        """Initialise a new repository (and a new client cache)."""
        path = self.store / label
        client = client_dir(self.clients, "borg-")
        dest = Destination(self.name, source, label, f"ssh://root@127.0.0.1:{self.sshd.port}{path}", path,
                           client_dir=client)
        measure.run_timed([BORG, "init", "--encryption", homesync_borg.ENCRYPTION, "--make-parent-dirs",
                           "--remote-path", BORG, dest.location], env=self.environment(dest), cwd=client,
                          server_pids=self.server_pids, timeout=120)
        return dest

    def backup(self, dest: Destination) -> Measurement:
        archive = f"bench-{len(dest.archives) + 1}"
        argv = [BORG, "create", "--json", "--remote-path", BORG, "--compression", homesync_borg.COMPRESSION,
                "--exclude-caches", "--one-file-system"]
        for marker in homesync_config.MARKERS:
            argv += ["--exclude-if-present", marker]
        for pattern in homesync_config.DEFAULT_EXCLUDES:
            argv += ["--exclude", f"sh:{pattern}"]
        m = measure.run_timed([*argv, f"{dest.location}::{archive}", "."], env=self.environment(dest), cwd=dest.source,
                              server_pids=self.server_pids, timeout=self.timeout)
        m.items = json.loads(m.output)["archive"]["stats"]["nfiles"]
        dest.archives.append(archive)
        return m

    def restore(self, dest: Destination, into: Path) -> Measurement:
        argv = [BORG, "extract", "--remote-path", BORG, f"{dest.location}::{dest.archives[-1]}"]
        return measure.run_timed(argv, env=self.environment(dest), cwd=into, server_pids=self.server_pids,
                                 timeout=self.timeout)

    def environment(self, dest: Destination) -> dict[str, str]:
        return user_env(dest.client_dir, BORG_BASE_DIR=str(dest.client_dir), BORG_PASSPHRASE=self.passphrase,
                        BORG_RSH=self.sshd.ssh_command(with_port=False), TZ="UTC")


class RsyncOverSsh(BehindSshd):
    """`rsync -a --delete` of the source to a directory behind the throwaway sshd, and
    back; the same exclusions by path (rsync knows no CACHEDIR.TAG)."""

    name = "rsync_ssh"
    title = "rsync+OpenSSH"

    def fresh(self, source: Path, label: str) -> Destination:
        path = self.store / label
        path.mkdir(parents=True)
        return Destination(self.name, source, label, f"root@127.0.0.1:{path}/", path)

    def backup(self, dest: Destination) -> Measurement:
        excludes = [f"--exclude=/{p}" for p in homesync_config.DEFAULT_EXCLUDES]
        m = self._rsync("-a", "--delete", *excludes, f"{dest.source}/", dest.location, cwd=dest.source)
        dest.archives.append("mirror")
        return m

    def restore(self, dest: Destination, into: Path) -> Measurement:
        return self._rsync("-a", dest.location, f"{into}/", cwd=into)

    def _rsync(self, *args: str, cwd: Path) -> Measurement:
        return measure.run_timed(["rsync", "-e", self.sshd.ssh_command(with_port=True), *args],
                                 env=user_env(self.clients), cwd=cwd, server_pids=self.server_pids,
                                 timeout=self.timeout)
