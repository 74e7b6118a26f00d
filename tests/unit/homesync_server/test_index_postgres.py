"""The PostgreSQL engine's own pieces that need no database."""

from __future__ import annotations

from homesync_server.index import MIGRATIONS
from homesync_server.index_postgres import COVERS, PG_MIGRATIONS, _pg
from homesync_server.index_store import redacted


def test_placeholders_become_psycopgs_and_quoted_text_stays_text():
    sql = "SELECT '50%' || ?, ':x?' FROM t WHERE a = :a AND b::int = ? AND \"e:nd\" > 1"
    assert _pg(sql) == "SELECT '50%%' || %s, ':x?' FROM t WHERE a = %(a)s AND b::int = %s AND \"e:nd\" > 1"


def test_every_sqlite_migration_has_its_postgresql_counterpart():
    covered = set().union(*(COVERS.get(n, {n}) for n in PG_MIGRATIONS))
    assert covered == set(MIGRATIONS)


def test_a_url_is_shown_without_its_password():
    assert redacted("postgresql://homesync:s3cret@db:5432/homesync") == "postgresql://homesync:***@db:5432/homesync"
    assert redacted("postgresql://homesync@db/homesync") == "postgresql://homesync@db/homesync"
    assert redacted("postgresql://homesync@db/hs?sslmode=require&password=s3cret&sslpassword=k3y") == \
        "postgresql://homesync@db/hs?sslmode=require&password=***&sslpassword=***"
    assert redacted("postgresql://u:p@db/hs?PASSWORD=x") == "postgresql://u:***@db/hs?PASSWORD=***"


def test_index_migrate_refuses_a_password_on_its_command_line(tmp_path):
    import pytest

    from homesync.errors import UsageError
    from homesync_server.actions.index_migration import migrate
    from homesync_server.config import Layout

    for url in ("postgresql://homesync:s3cret@db/hs", "postgresql://homesync@db/hs?password=s3cret"):
        with pytest.raises(UsageError, match="may not carry a password") as refused:
            migrate(Layout(tmp_path), url)
        assert "s3cret" not in refused.value.line()
    assert not list(tmp_path.iterdir()), "nothing was written"


def test_index_url_in_server_toml_picks_the_engine(tmp_path):
    import pytest

    from homesync.errors import ConfigError
    from homesync_server import config as server_config, index_store
    from homesync_server.config import Layout

    layout = Layout(tmp_path)
    layout.config_file.write_text(server_config.render_default("127.0.0.1:2222"))
    assert index_store.url_of(layout) == f"sqlite://{tmp_path / 'index.sqlite'}"
    layout.config_file.write_text(layout.config_file.read_text() + '\n[index]\nurl = "postgresql://h@db/x"\n')
    assert index_store.url_of(layout) == "postgresql://h@db/x"
    assert index_store.engine("postgresql://h@db/x").__name__ == "homesync_server.index_postgres"
    layout.config_file.write_text(layout.config_file.read_text().replace("postgresql://", "mysql://"))
    with pytest.raises(ConfigError, match=r"\[index\] url"):
        server_config.load(layout)
