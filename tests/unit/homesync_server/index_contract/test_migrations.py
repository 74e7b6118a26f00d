"""Contract: migrations run once, whatever the engine and however many servers start at once."""

from __future__ import annotations

import threading

from homesync_server.index import MIGRATIONS

from .helpers import enrolled


def test_a_new_index_has_every_migration_applied(index):
    assert index.schema_version() == max(MIGRATIONS)
    assert index.applied_migrations() == set(MIGRATIONS)


def test_reopening_runs_no_migration_again_and_keeps_the_rows(opener, index):
    enrolled(index)
    index.close()
    again = opener()
    assert again.applied_migrations() == set(MIGRATIONS)
    assert again.machine_ids() == {"a" * 16}


def test_servers_starting_at_once_migrate_once(opener):
    opened, errors, start = [], [], threading.Barrier(4)

    def open_one():
        start.wait()
        try:
            opened.append(opener())
        except Exception as e:  # noqa: BLE001 (the assertion shows it)
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    assert {i.schema_version() for i in opened} == {max(MIGRATIONS)}


def test_read_only_opens_a_migrated_index_and_reads_it(opener, index):
    enrolled(index)
    reader = opener(read_only=True)
    assert reader.machine_ids() == {"a" * 16}
