"""The sealed file catalogs the server keeps beside each repository (catalog.put and
catalog.get): parts in order or refused, at most MAX_CATALOG bytes, the kept copy
replaced only by a whole new one, read back in parts with a stamp that changes."""

from __future__ import annotations

import pytest

from homesync.errors import NotFoundError, UsageError
from homesync_server import repos
from homesync_server.actions import setup
from homesync_server.config import Layout
from homesync_server.services import Services

MACHINE_ID = "0123456789abcdef"


@pytest.fixture
def store(tmp_path):
    layout = Layout(tmp_path / "data")
    setup.init(layout, "127.0.0.1:0")
    with Services.open(layout) as opened:
        opened.repos.path(MACHINE_ID).mkdir(parents=True)
        yield opened.repos


def _read(store) -> bytes:
    parts, offset = [], 0
    while True:
        part = store.get_catalog(MACHINE_ID, offset)
        parts.append(part["data"])
        offset += len(part["data"])
        if offset >= part["size"]:
            return b"".join(parts)


def test_parts_in_order_replace_the_kept_catalog_only_when_whole(store):
    with pytest.raises(NotFoundError):
        store.get_catalog(MACHINE_ID, 0)
    big = bytes(range(256)) * 5000  # more than one part of get_catalog
    store.put_catalog(MACHINE_ID, 0, big[:700_000], False)
    with pytest.raises(NotFoundError):
        store.get_catalog(MACHINE_ID, 0)  # not whole yet
    store.put_catalog(MACHINE_ID, 700_000, big[700_000:], True)
    assert _read(store) == big
    stamp = store.get_catalog(MACHINE_ID, 0)["stamp"]
    store.put_catalog(MACHINE_ID, 0, b"second", False)
    with pytest.raises(UsageError, match="out of order"):
        store.put_catalog(MACHINE_ID, 7, b"x", True)
    assert _read(store) == big  # the kept one stays
    store.put_catalog(MACHINE_ID, 6, b" one", True)
    assert _read(store) == b"second one" and store.get_catalog(MACHINE_ID, 0)["stamp"] != stamp


def test_a_catalog_larger_than_the_limit_is_refused(store, monkeypatch):
    monkeypatch.setattr(repos, "MAX_CATALOG", 10)
    with pytest.raises(UsageError, match="at most 10 bytes"):
        store.put_catalog(MACHINE_ID, 0, b"x" * 11, True)
    with pytest.raises(NotFoundError):
        store.get_catalog(MACHINE_ID, 0)
