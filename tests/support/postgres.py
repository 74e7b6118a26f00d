"""A throwaway PostgreSQL cluster for tests: Debian's binaries (postgresql 15), initdb and
pg_ctl run as an unprivileged user (PostgreSQL refuses root) in a temp dir, listening
only on a unix socket in that dir. One cluster per test run; each test a fresh database.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.processes import UNPRIVILEGED

SUPERUSER = "homesync"


def binaries() -> Path | None:
    """Return the directory of initdb and pg_ctl (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A running cluster in a directory of its own; url(name) gives a database's URL."""

    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (make setup installs Debian's postgresql)")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="homesync-pg-"))
        os.chown(self.dir, UNPRIVILEGED, UNPRIVILEGED)
        self._names = itertools.count(1)
        self._run("initdb", "-D", str(self.dir / "data"), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        command = [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={UNPRIVILEGED}",
                   f"--regid={UNPRIVILEGED}", "--clear-groups", str(self.bin / tool), *args]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.dir), "LC_ALL": "C.UTF-8"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=self.dir, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr or done.stdout}")
        return done

    def start(self) -> None:
        """Start (or restart) the server: unix socket in the cluster's dir, no TCP, no fsync."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-t", "60", "start",
                  "-o", f"-k {self.dir} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                        "-c full_page_writes=off -c max_connections=200")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-w", "-t", "60", "-m", mode, "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.dir), safe='')}"

    def new_database(self) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: list[Cluster] = []


def shared_cluster() -> Cluster:
    """Return the test run's cluster, started on first use and stopped when the run ends."""
    if not _shared:
        _shared.append(Cluster())
        atexit.register(_shared[0].close)
    return _shared[0]


# HOMESYNC_TEST_INDEX=postgresql runs the end-to-end servers on PostgreSQL (default: SQLite).
ENGINE_VARIABLE = "HOMESYNC_TEST_INDEX"


def e2e_index_url() -> str | None:
    """Return a fresh database's URL for an end-to-end server, or None (its SQLite file)."""
    engine = os.environ.get(ENGINE_VARIABLE, "sqlite")
    if engine not in ("sqlite", "postgresql"):
        raise RuntimeError(f"{ENGINE_VARIABLE}={engine!r}: use sqlite or postgresql")
    return shared_cluster().new_database() if engine == "postgresql" else None


@pytest.fixture(scope="session")
def postgres_cluster() -> Cluster:
    """One PostgreSQL cluster for the whole test run (started on first use)."""
    return shared_cluster()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """The URL of a fresh, empty database of the test run's cluster."""
    return postgres_cluster.new_database()
