"""Running homesync's real executables in tests: as an unprivileged user (the product
never runs as root), with a private HOME, loopback only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
UNPRIVILEGED = 65534  # nobody


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_dir(prefix: str) -> Path:
    """Return a new directory owned by the unprivileged user (pytest's tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    os.chown(path, UNPRIVILEGED, UNPRIVILEGED)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """Return a minimal environment for a user process with HOME=home."""
    env = {"HOME": str(home), "PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "USER": "nobody", "LOGNAME": "nobody"}
    env.update(extra)
    return env


def run_as_user(argv: list[str], home: Path, input: str | bytes | None = None, timeout: float = 120,
                **extra_env: str) -> subprocess.CompletedProcess:
    """Run argv as the unprivileged user; return the completed process (text output)."""
    if isinstance(input, bytes):
        input = input.decode()
    demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                          env=user_env(home, **extra_env), cwd=str(home), **demote)


def chown_tree(root: Path) -> None:
    """Give a tree built by the (root) test to the unprivileged user."""
    if os.geteuid() != 0:
        return
    os.lchown(root, UNPRIVILEGED, UNPRIVILEGED)
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), UNPRIVILEGED, UNPRIVILEGED)
