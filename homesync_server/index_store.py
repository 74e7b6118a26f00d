"""The index as the rest of the server sees it: small protocols split by what the index
holds, and the one place that opens it from `[index] url` in server.toml (a table of
engines: sqlite, the embedded default, and postgresql). Nothing else names a database.

The contract every engine keeps (tests/unit/homesync_server/index_contract runs it on
each): every write method is one transaction, all of it or nothing, and the audit event
it is given is appended in that same transaction; a name taken twice raises
ConflictError and writes nothing; archive reports, holds and grants are idempotent;
the audit hash chain stays one chain whatever the number of writers (appends are
serialised); migrations run once, also when several servers start at once.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Protocol, TypeVar

from homesync.errors import ConfigError
from homesync_server.config import IndexConfig, Layout, ServerConfig
from homesync_server.logins import Record


T = TypeVar("T")

class Users(Protocol):
    def record_user(self, name: str, display_name: str = "") -> None: ...
    def users(self) -> list[dict[str, Any]]: ...
    def display_names(self) -> dict[str, str]: ...


class Machines(Protocol):
    """Enrolled machines, their keys (and the keys an adopt replaced), their agent's state."""

    def add_machine(self, machine: dict[str, Any], name_key: str, audit: dict[str, Any]) -> None: ...
    def name_taken(self, owner: str, name_key: str) -> bool: ...
    def machine_ids(self) -> set[str]: ...
    def machine(self, machine_id: str) -> dict[str, Any] | None: ...
    def machines(self, owner: str | None = None) -> list[dict[str, Any]]: ...
    def replace_machine_key(self, machine_id: str, public_key: str, hostname: str, audit: dict[str, Any]) -> None: ...
    def revoked_key(self, machine_id: str, public_key: str) -> dict[str, Any] | None: ...
    def replaced_keys(self) -> dict[str, list[dict[str, Any]]]: ...
    def touch_machine(self, machine_id: str, at: float) -> None: ...
    def set_agent_state(self, machine_id: str, state: str, reason: str, version: str) -> None: ...
    def change_machine(self, machine_id: str, changes: dict[str, str], audit: dict[str, Any]) -> None: ...
    def import_machine(self, machine: dict[str, Any], name_key: str, archives: list[dict[str, Any]],
                       replaced_keys: list[dict[str, Any]] = ()) -> None: ...


class Archives(Protocol):
    """Each machine's archives as reported by its agent and observed by the server."""

    def add_archive(self, machine_id: str, archive: dict[str, Any], audit: dict[str, Any]) -> None: ...
    def archives(self, machine_id: str) -> list[dict[str, Any]]: ...
    def archive_observations(self, machine_id: str) -> list[dict[str, Any]]: ...
    def observe_archives(self, machine_id: str, added: list[dict[str, Any]], seen: list[dict[str, Any]],
                         audit: dict[str, Any] | None) -> None: ...
    def mark_pruning(self, machine_id: str, names: list[str]) -> None: ...
    def remove_archives(self, machine_id: str, names: list[str], audit: dict[str, Any]) -> None: ...


class History(Protocol):
    """The post-session check's state: last good repository state, pending sessions, freezes."""

    def history(self, machine_id: str) -> dict[str, Any] | None: ...
    def note_session(self, machine_id: str, started: float, ended: float) -> None: ...
    def session_opened(self, machine_id: str, started: float) -> None: ...
    def sessions_ended_by(self, now: float) -> None: ...
    def pending_checks(self) -> list[str]: ...
    def record_good_check(self, machine_id: str, key: str, transaction: int | None, at: float,
                          until: float) -> None: ...
    def freeze_history(self, machine_id: str, reason: str, gone: list[str], at: float, until: float,
                       audit: dict[str, Any]) -> None: ...
    def release_history(self, machine_id: str, actor: str, audit: dict[str, Any]) -> bool: ...
    def frozen_by_history(self, user: str | None) -> list[dict[str, Any]]: ...


class AuditLog(Protocol):
    """The append-only, hash-chained audit log (ids never reused: a gap is a deletion)."""

    def audit(self, action: str, actor: str, machine_id: str | None = None, source: str = "",
              **detail: Any) -> None: ...
    def audit_events(self, since: float = 0.0, action: str | None = None) -> list[dict[str, Any]]: ...
    def audit_chain_page(self, after_id: int, limit: int = 5000) -> list[dict[str, Any]]: ...
    def audit_row_with_hash(self, digest: str) -> int | None: ...
    def audit_sequence(self) -> int: ...
    def activity(self, since: float, until: float, user: str | None, skip: tuple[str, ...],
                 limit: int) -> list[dict[str, Any]]: ...
    def activity_counts(self, since: float, until: float, user: str | None,
                        skip: tuple[str, ...]) -> dict[str, int]: ...


class DrillsAndHolds(Protocol):
    """Restore drills, legal holds and mass-change flags (the last two freeze pruning)."""

    def add_drill(self, drill: dict[str, Any], audit: dict[str, Any]) -> None: ...
    def drills(self, machine_id: str | None = None, latest_only: bool = False) -> list[dict[str, Any]]: ...
    def drill_outcomes(self, user: str | None, limit: int) -> tuple[list[dict], list[dict]]: ...
    def add_hold(self, machine_id: str, archive: str, actor: str, reason: str, audit: dict[str, Any]) -> bool: ...
    def remove_holds(self, machine_id: str, archive: str | None, audit: dict[str, Any]) -> int: ...
    def holds(self, machine_id: str | None = None) -> list[dict[str, Any]]: ...
    def flag_mass_change(self, flag: dict[str, Any], audit: dict[str, Any]) -> None: ...
    def release_mass_change(self, machine_id: str, actor: str, audit: dict[str, Any]) -> bool: ...
    def mass_change_flags(self, machine_id: str | None = None,
                          include_released: bool = False) -> list[dict[str, Any]]: ...
    def frozen_by_mass_change(self, user: str | None) -> list[dict[str, Any]]: ...


class Grants(Protocol):
    """One-off restore keys, shared by every server process and kept over restarts."""

    def add_grant(self, grant: dict[str, Any]) -> None: ...
    def end_lapsed_grants(self, now: float) -> list[dict[str, Any]]: ...
    def live_grant(self, public_key: str, repository_id: str, now: float) -> dict[str, Any] | None: ...
    def grant(self, public_key: str, repository_id: str) -> dict[str, Any] | None: ...
    def touch_grant(self, public_key: str, now: float) -> None: ...
    def revoke_grants(self, repository_id: str, user: str | None = None, public_key: str | None = None) -> int: ...


class LoginThrottle(Protocol):
    """Failed-login counts per account and per address (the rules are logins.py's)."""

    def throttle(self, keys: tuple[str, ...], change: Callable[[list[Record], float], tuple[Any, list[dict]]],
                 forget: Callable[[Record, float], list[dict]] | None = None, now: float | None = None) -> Any: ...
    def login_records(self) -> list[Record]: ...


class Policies(Protocol):
    """The fleet policy's versions, local group members, remembered directory groups."""

    def policy_version(self) -> dict[str, Any] | None: ...
    def policy_versions(self) -> list[dict[str, Any]]: ...
    def add_policy_version(self, scope: str, target: str, layers: dict, changed: list[str], actor: str,
                           audit: dict[str, Any]) -> int: ...
    def import_policy(self, versions: list[dict[str, Any]], group_members: list[dict[str, Any]]) -> None: ...
    def set_group_member(self, group: str, user: str, member: bool, audit: dict[str, Any]) -> bool: ...
    def group_members(self, user: str | None = None) -> list[dict[str, Any]]: ...
    def remember_groups(self, user: str, groups: list[str], at: float) -> None: ...
    def remembered_groups(self, user: str) -> list[str] | None: ...
    def policy_contact(self, machine_id: str, applied: int | None, at: float) -> None: ...
    def policy_states(self) -> dict[str, dict[str, Any]]: ...


class Reports(Protocol):
    """The fleet aggregated in the database (a report of 100,000 machines in seconds)."""

    def fleet(self, owner: str | None = None) -> list[dict[str, Any]]: ...
    def fleet_records(self, owner: str | None = None) -> list[tuple]: ...
    def fleet_columns(self, owner: str | None = None) -> dict[str, list]: ...
    def storage_growth(self, bucket_seconds: int, owners: list[str]) -> list[dict[str, Any]]: ...


class Nodes(Protocol):
    """The server nodes' heartbeats, and the leases of jobs that run once at a time (issue 14)."""

    def node_heartbeat(self, node: dict[str, Any]) -> None: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def forget_node(self, node_id: str) -> bool: ...
    def take_lease(self, name: str, holder: str, node: str, seconds: float, now: float) -> dict[str, Any]: ...
    def renew_lease(self, name: str, holder: str, seconds: float, now: float) -> bool: ...
    def release_lease(self, name: str, holder: str) -> bool: ...
    def leases(self) -> list[dict[str, Any]]: ...


class Loading(Protocol):
    """A whole fleet into an empty index at once (benchmarks, large test fleets)."""

    def load_fleet(self, tables: dict[str, Iterable[tuple]],
                   audit: Iterable[dict[str, Any]] = ()) -> dict[str, int]: ...


class Lifecycle(Protocol):
    """Opening, checking and closing; where the index is (for messages)."""

    engine: str
    where: str

    def close(self) -> None: ...
    def check_integrity(self) -> None: ...
    def schema_version(self) -> int: ...
    def applied_migrations(self) -> set[int]: ...


class IndexStore(Users, Machines, Archives, History, AuditLog, DrillsAndHolds, Grants, LoginThrottle, Policies,
                 Reports, Nodes, Loading, Lifecycle, Protocol):
    """Everything the index holds: what services hand to the rest of the server."""


# Engines by URL scheme: the module that implements each (imported only when used, so
# that a SQLite site needs no PostgreSQL driver). Each module has open_url(url, read_only),
# missing(url), set_aside_url(url, why), read_set_aside_url(url, set_aside_name, read) and check(url).
ENGINES = {"sqlite": "homesync_server.index", "postgresql": "homesync_server.index_postgres"}


def default_url(layout: Layout) -> str:
    """Return the index a data directory has unless server.toml says otherwise."""
    return f"sqlite://{layout.index}"


def url_of(layout: Layout, config: ServerConfig | None = None) -> str:
    """Return the URL of the data directory's index ([index] url; the SQLite file by default)."""
    if config is None:
        from homesync_server import config as server_config

        if not layout.config_file.exists():
            return default_url(layout)
        config = server_config.load(layout)
    return config.index.url or default_url(layout)


def engine(url: str):
    """Return the module of the engine a URL names; raise ConfigError for any other."""
    scheme = url.partition(":")[0]
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme not in ENGINES:
        raise ConfigError(f"[index] url {redacted(url)!r}: no index engine {scheme!r}",
                          "use sqlite:///PATH or postgresql://…")
    return importlib.import_module(ENGINES[scheme])


def open_url(url: str, read_only: bool = False, statement_timeout: float = 30.0, pool_size: int = 16) -> IndexStore:
    """Open (and migrate, unless read_only) the index at url; statement_timeout: the
    seconds one statement may take, pool_size: the connections kept at the most (where
    the engine has such limits)."""
    return engine(url).open_url(url, read_only, statement_timeout, pool_size)


def open_index(layout: Layout, read_only: bool = False, config: ServerConfig | None = None) -> IndexStore:
    """Open the data directory's index, as server.toml's [index] url says."""
    if config is None and layout.config_file.exists():
        from homesync_server import config as server_config

        config = server_config.load(layout)
    settings = config.index if config else IndexConfig()
    return open_url(url_of(layout, config), read_only, settings.statement_timeout, settings.pool_size)


def missing(layout: Layout) -> bool:
    """Return whether the data directory's index does not exist yet (a lost SQLite file)."""
    url = url_of(layout)
    return engine(url).missing(url)


def set_aside(layout: Layout, why: str) -> str:
    """Keep the data directory's index aside (reindex --force); return the name it has now."""
    url = url_of(layout)
    return engine(url).set_aside_url(url, why)


def read_set_aside(layout: Layout, set_aside_name: str, read: Callable[[IndexStore], T]) -> T | None:
    """Return what read takes from the index set aside under that name, opened read-only
    (None: it cannot be read)."""
    url = url_of(layout)
    return engine(url).read_set_aside_url(url, set_aside_name, read)


def check(layout: Layout) -> str:
    """Return a sentence saying the index is sound; raise IndexDamagedError (or
    IndexUnavailableError) saying what is wrong."""
    url = url_of(layout)
    return engine(url).check(url)


def where(layout: Layout) -> str:
    """Return where the data directory's index is, for messages (a path, or a URL without its password)."""
    return redacted(url_of(layout)).removeprefix("sqlite://")


_SECRET_PARAMETERS = ("password", "sslpassword")  # libpq takes these in a URL's query too


def redacted(url: str) -> str:
    """Return url without a password (for messages and logs): one in its user part, and
    a password or sslpassword parameter in its query."""
    scheme, sep, rest = url.partition("://")
    rest, mark, query = rest.partition("?")
    if mark:
        query = "&".join(f"{name}=***" if name.lower() in _SECRET_PARAMETERS else f"{name}{eq}{value}"
                         for name, eq, value in (part.partition("=") for part in query.split("&")))
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{host}"
    return f"{scheme}{sep}{rest}{mark}{query}"


def has_password(url: str) -> bool:
    """Return whether a URL carries a password (in its user part or its query)."""
    return redacted(url) != url

