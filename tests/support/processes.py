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
# The product's processes do not see the test run's pytest (see product_path/pytest.py).
PRODUCT_PATH = Path(__file__).parent / "product_path"
UNPRIVILEGED = 65534  # nobody


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_dir(prefix: str, uid: int = UNPRIVILEGED) -> Path:
    """Return a new directory owned by an unprivileged user (pytest's tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    os.chown(path, uid, uid)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """Return a minimal environment for a user process with HOME=home."""
    env = {"HOME": str(home), "PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "USER": "nobody", "LOGNAME": "nobody", "PYTHONPATH": str(PRODUCT_PATH)}
    env.update(extra)
    return env


def run_as_user(argv: list[str], home: Path, input: str | bytes | None = None, timeout: float = 120,
                uid: int = UNPRIVILEGED, **extra_env: str) -> subprocess.CompletedProcess:
    """Run argv as an unprivileged user; return the completed process (text output)."""
    if isinstance(input, bytes):
        input = input.decode()
    demote = {"user": uid, "group": uid, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                          env=user_env(home, **extra_env), cwd=str(home), **demote)


def chown_tree(root: Path, uid: int = UNPRIVILEGED) -> None:
    """Give a tree built by the (root) test to an unprivileged user."""
    if os.geteuid() != 0:
        return
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)
