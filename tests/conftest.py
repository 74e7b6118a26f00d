"""Fixtures every test directory may use: the test run's PostgreSQL (started only when a
test asks for it)."""

from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401
