"""Suite-wide set-up: the product's bytecode, compiled once before any test runs, and
fixtures every test directory may use: the test run's PostgreSQL (started only when a
test asks for it). `make test` runs the suite in two pytest-xdist workers (one file a
worker at a time, --dist loadfile): the hooks below are the controller's part of that."""

from __future__ import annotations

import compileall
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.faults import tally
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401

PRODUCT = [Path(__file__).parents[1] / package for package in ("homesync", "homesync_server")]


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config) -> None:
    # One fault seed for the whole run: workers, started after this, inherit it.
    if not _is_worker(config):
        os.environ[tally.SEED_VARIABLE] = str(tally.SEED)


def pytest_sessionstart(session) -> None:
    # The tests run homesync and homesync-server as an unprivileged user, who may not
    # write __pycache__ into this checkout: each of those hundreds of commands would
    # compile its modules anew (about 0.1 s of CPU a command). Compiled here, they read
    # the bytecode; a module changed since is still compiled from its source. (Once, by
    # the controller, before it starts the workers.)
    if _is_worker(session.config):
        return
    for package in PRODUCT:
        compileall.compile_dir(package, quiet=1)


def pytest_sessionfinish(session) -> None:
    if _is_worker(session.config):  # the worker's tally of fault trials, for the controller
        session.config.workeroutput["fault_tally"] = [[*key, n] for key, n in tally.TALLY.items()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    for *key, n in getattr(node, "workeroutput", {}).get("fault_tally", []):
        tally.TALLY[tuple(key)] += n


def pytest_terminal_summary(terminalreporter) -> None:
    for line in tally.summary(Counter(tally.TALLY)):
        terminalreporter.write_line(line)
