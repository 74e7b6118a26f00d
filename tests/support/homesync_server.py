"""A real homesync server for tests: `homesync-server init` in a fresh data directory,
local users joe and ann, `homesync-server serve` on a free loopback port, run as an
unprivileged user, stopped with SIGTERM (which must end it cleanly)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from homesync_server.index_store import IndexStore, open_url
from tests.support.postgres import e2e_index_url
from tests.support.processes import VENV_BIN, free_port, private_dir, remove, run_as_user

PASSWORDS = {"joe": "joe-secret-pw", "ann": "ann-secret-pw"}
# SIGTERM drains (issue 14): what a test left running (the file catalog's keeping after a
# backup) may finish, for 10 s at most in tests (the default is 60 s).
DRAIN = "[node]\ndrain_seconds = 10\n"
# Several `homesync-server` commands in one process (an interpreter start is most of
# each command's cost): each argv of the JSON list in argv[1] through the CLI's own
# main() in turn, passwords read from stdin as --password-stdin reads them; the first
# that fails ends the run with its exit code.
SET_UP = ("import json, sys\nfrom homesync_server.cli import main\n"
          "sys.exit(next((rc for rc in map(main, json.loads(sys.argv[1])) if rc), 0))")


@dataclass
class RunningServer:
    data: Path
    address: str
    fingerprint: str
    process: subprocess.Popen | None = None
    log: Path = field(default=None)
    env: dict[str, str] = field(default_factory=dict)  # more environment for `serve`
    index_url: str | None = None  # [index] url (None: the SQLite file in the data directory)
    name: str = "serve"  # its log is <base>/<name>.log (nodes sharing one data directory: one each)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run `homesync-server ARGS --data DIR` as the server's user."""
        return run_as_user([str(VENV_BIN / "homesync-server"), *args, "--data", str(self.data)],
                           self.data.parent, input=input)

    def cli_json(self, *args: str):
        """Run `homesync-server ARGS --json --data DIR` and return its parsed output."""
        import json
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def start(self) -> None:
        """Start `serve`. A first start on a port taken since free_port() chose it (another
        test's process, this machine is shared) moves to a new port: a race of the test's
        own, not the product's; a restart keeps the address agents were enrolled with."""
        first = self.process is None
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError:
                if not (first and attempt < 2 and "Address already in use" in self.log.read_text()):
                    raise
                old, self.address = self.address, f"127.0.0.1:{free_port()}"
                config = self.data / "server.toml"  # where reindex looks for a running server
                config.write_text(config.read_text().replace(old, self.address))

    def _start(self) -> None:
        self.log = self.data.parent / f"{self.name}.log"
        from tests.support.processes import UNPRIVILEGED, user_env
        import os
        demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []} if os.geteuid() == 0 else {}
        self.process = subprocess.Popen(
            [str(VENV_BIN / "homesync-server"), "serve", "--data", str(self.data), "--listen", self.address],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=user_env(self.data.parent, **self.env),
            **demote)
        host, port = self.address.rsplit(":", 1)
        try:
            _wait_for_port(host, int(port), self.process)
        except BaseException as e:  # a server that did not come up is not left running
            self.process.kill()
            self.process.wait()
            tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise RuntimeError(f"{e}; its log ends:\n{tail}") from None

    def stop(self, at_once: bool = False) -> int:
        """Stop the server and return its exit status: SIGTERM drains (running sessions
        may finish); at_once: a second signal (SIGINT) stops it at once, ending them."""
        self.process.send_signal(signal.SIGTERM)
        if at_once:
            time.sleep(0.2)  # the first signal handled: the second one ends the drain
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    @contextmanager
    def index(self) -> Iterator[IndexStore]:
        """Open the server's index read-only through the product's interface (either engine)."""
        opened = open_url(self.index_url or f"sqlite://{self.data / 'index.sqlite'}", read_only=True)
        try:
            yield opened
        finally:
            opened.close()

    def index_rows(self, sql: str) -> list[tuple]:
        """Read the index with plain SQL (on either engine), for what the index's interface
        does not give (columns only the server itself reads); prefer index()."""
        if self.index_url:
            import psycopg
            with psycopg.connect(self.index_url) as db:
                return [tuple(row) for row in db.execute(sql).fetchall()]
        import sqlite3
        db = sqlite3.connect(self.data / "index.sqlite")
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"homesync-server exited with {process.returncode}")  # the log says why
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("homesync-server did not start listening")


def start_server(users: dict[str, str] = PASSWORDS, identity: str = "", settings: str = "",
                 full_names: dict[str, str] | None = None, index_url: str | None = None,
                 sections: str = "", env: dict[str, str] | None = None, name: str = "serve") -> RunningServer:
    """Create, populate and start a server; the caller stops it. identity: a TOML
    [identity] section replacing the local backend (e.g. for LDAP); settings: lines
    added to the [server] section; full_names: the local users' full names; index_url:
    its [index] url (default: as $HOMESYNC_TEST_INDEX says, the SQLite file unless
    it says postgresql); sections: more TOML tables for server.toml (e.g. [node]);
    env, name: more environment for `serve`, and the name of its log."""
    base = private_dir("hs-server-")
    data = base / "data"
    address = f"127.0.0.1:{free_port()}"
    server = RunningServer(data, address, "", env=dict(env or {}), name=name)
    # init and every `user add` in one process (SET_UP); the users are added before the
    # configuration is edited below, which `user add` reads only to check that the
    # directory is a server's.
    commands = [["init", "--data", str(data), "--listen", address]]
    for name in users:
        full_name = ["--full-name", full_names[name]] if full_names and name in full_names else []
        commands.append(["user", "add", name, *full_name, "--password-stdin", "--data", str(data)])
    done = run_as_user([str(VENV_BIN / "python"), "-c", SET_UP, json.dumps(commands)], base,
                       input="".join(password + "\n" for password in users.values()))
    assert done.returncode == 0, done.stderr
    server.fingerprint = done.stdout.splitlines()[0].strip()
    assert done.stdout.count("added user ") == len(users), done.stdout
    if settings:
        config = data / "server.toml"
        config.write_text(config.read_text().replace("[server]\n", "[server]\n" + settings.strip() + "\n", 1))
    if identity:
        config = data / "server.toml"
        text = config.read_text()
        config.write_text(text[:text.index("[identity]")] + identity)
    server.index_url = index_url or e2e_index_url()
    if server.index_url:
        config = data / "server.toml"
        config.write_text(config.read_text() + f'\n[index]\nurl = "{server.index_url}"\n')
    if "[node]" not in sections:  # stop() waits 30 s: a drain after the last test step stays within it
        sections = DRAIN + sections
    config = data / "server.toml"
    config.write_text(config.read_text() + "\n" + sections.strip() + "\n")
    server.start()
    return server


@pytest.fixture(scope="module")
def homesync_server():
    """A running server shared by a test module."""
    server = start_server()
    yield server
    rc = server.stop()
    remove(server.data.parent)
    assert rc == 0, "homesync-server did not stop cleanly on SIGTERM"


@pytest.fixture
def fresh_server():
    """A running server of a test's own."""
    server = start_server()
    yield server
    if server.process.poll() is None:
        server.stop()
    remove(server.data.parent)
