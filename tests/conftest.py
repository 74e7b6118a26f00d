"""Suite-wide set-up: the product's bytecode, compiled once before any test runs, and
fixtures every test directory may use: the test run's PostgreSQL (started only when a
test asks for it)."""

from __future__ import annotations

import compileall
from pathlib import Path

from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401

PRODUCT = [Path(__file__).parents[1] / package for package in ("homesync", "homesync_server")]


def pytest_sessionstart(session) -> None:
    # The tests run homesync and homesync-server as an unprivileged user, who may not
    # write __pycache__ into this checkout: each of those hundreds of commands would
    # compile its modules anew (about 0.1 s of CPU a command). Compiled here, they read
    # the bytecode; a module changed since is still compiled from its source.
    for package in PRODUCT:
        compileall.compile_dir(package, quiet=1)
