"""PostgreSQL only: a database that stops answering gives one clear error, leaves no
half-written rows, and the index recovers by itself once it is back."""

from __future__ import annotations

import time

import psycopg
import pytest

from homesync.errors import IndexUnavailableError
from homesync_server.index import event
from homesync_server.index_postgres import LOCKS, PostgresIndex

from .helpers import MACHINE, OTHER, archive, enrolled, machine


def test_a_stopped_database_is_unavailable_and_the_index_recovers_when_it_is_back(postgres_cluster, postgres_url):
    index = PostgresIndex(postgres_url, connect_timeout=2.0)
    try:
        enrolled(index)
        postgres_cluster.stop()
        try:
            with pytest.raises(IndexUnavailableError) as raised:
                index.add_archive(MACHINE, archive(), event("backup", "joe"))
            assert raised.value.line().startswith("index unavailable: ")
            assert raised.value.exit_code == 33
        finally:
            postgres_cluster.start()
        assert index.archives(MACHINE) == []  # nothing half-written; and the pool reconnected
        index.add_archive(MACHINE, archive(), event("backup", "joe"))
        assert [a["name"] for a in index.archives(MACHINE)] == ["a"]
    finally:
        index.close()


def test_the_first_request_after_a_long_outage_is_answered(postgres_cluster, postgres_url):
    """Down for longer than the pool's backoff between retries grows to (1, 2, 4, 8, 16 s),
    with requests refused meanwhile: once the database is back, the next request is
    answered at once, not after the pool's next retry."""
    index = PostgresIndex(postgres_url, connect_timeout=2.0)
    try:
        enrolled(index)
        postgres_cluster.stop()
        try:
            down_until = time.monotonic() + 20
            while time.monotonic() < down_until:
                with pytest.raises(IndexUnavailableError):
                    index.machine_ids()
                time.sleep(0.5)
        finally:
            postgres_cluster.start()
        assert index.machine_ids() == {MACHINE}
    finally:
        index.close()


def test_a_statement_over_its_timeout_rolls_the_whole_write_back(postgres_url):
    index = PostgresIndex(postgres_url, statement_timeout=0.5)
    blocker = psycopg.connect(postgres_url, autocommit=True)
    try:
        enrolled(index)
        blocker.execute(f"SELECT pg_advisory_lock({LOCKS}, hashtext('audit'))")  # session-level: held
        with pytest.raises(IndexUnavailableError):
            index.add_machine(machine(OTHER, "Desk"), "desk", event("enroll", "joe", OTHER))
        blocker.execute(f"SELECT pg_advisory_unlock({LOCKS}, hashtext('audit'))")
        assert index.machine_ids() == {MACHINE}  # the machine row went with the audit event that timed out
        assert [e["action"] for e in index.audit_events()] == ["enroll"]
    finally:
        blocker.close()
        index.close()


def test_the_pool_keeps_at_most_pool_size_connections_and_a_busy_one_waits(postgres_url):
    """Twelve threads at once on a pool of three: every request is answered (a busy pool
    makes a request wait, it does not fail it), and the database never sees more than
    three connections of this index."""
    import threading

    index, seen, errors = PostgresIndex(postgres_url, pool_size=3), [], []
    enrolled(index)

    def work() -> None:
        try:
            for _ in range(5):
                assert [m["id"] for m in index.machines("joe")] == [MACHINE]
                seen.append(index._query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = "
                                         "current_database() AND backend_type = 'client backend'")[0]["n"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=work) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and len(seen) == 60
        assert max(seen) <= 3
    finally:
        index.close()
