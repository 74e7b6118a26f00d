"""The contract suite runs every test once per index engine: SQLite (a file in the
test's directory) and PostgreSQL (a fresh database of the test run's cluster)."""

from __future__ import annotations

import pytest

from homesync_server.index_store import open_url

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(params=ENGINES)
def index_url(request, tmp_path) -> str:
    """The URL of an empty index of each engine."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'index.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def opener(index_url):
    """open() opens (another connection to) the test's index; all are closed at the end."""
    opened = []

    def open_(read_only: bool = False):
        index = open_url(index_url, read_only)
        opened.append(index)
        return index

    yield open_
    for index in opened:
        index.close()


@pytest.fixture
def index(opener):
    return opener()
