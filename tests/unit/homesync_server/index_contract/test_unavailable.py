"""PostgreSQL only: a database that stops answering gives one clear error, leaves no
half-written rows, and the index recovers by itself once it is back."""

from __future__ import annotations

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
