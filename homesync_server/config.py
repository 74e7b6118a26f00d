"""The server's data directory layout and its configuration file, <data>/server.toml.

Every path the server uses is derived here; nothing else joins paths under <data>.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from homesync import settings
from homesync.errors import ConfigError
from homesync.names import is_machine_id
from homesync_server.identity import IdentityConfig
from homesync_server.retention import Settings as RetentionSettings, settings_from_toml

DEFAULT_LISTEN = "0.0.0.0:2222"


@dataclass(frozen=True)
class Layout:
    """Where things live under the data directory."""

    data: Path

    @property
    def config_file(self) -> Path:
        return self.data / "server.toml"

    @property
    def host_key(self) -> Path:
        return self.data / "host_key"

    @property
    def escrow_key(self) -> Path:
        return self.data / "escrow.key"

    @property
    def index(self) -> Path:
        return self.data / "index.sqlite"

    @property
    def repos(self) -> Path:
        return self.data / "repos"

    @property
    def borg_home(self) -> Path:
        """BORG_BASE_DIR for the server's own borg runs (cache, security, keys)."""
        return self.data / "borg"

    @property
    def default_scratch(self) -> Path:
        """Where drills extract archives unless [drill] scratch says otherwise: outside
        the data directory (an archive is untrusted input), one per data directory."""
        digest = hashlib.sha256(os.fsencode(self.data)).hexdigest()[:12]
        base = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()  # /tmp may be RAM
        return Path(base) / f"homesync-drill-{digest}"

    def repo(self, machine_id: str) -> Path:
        """Return the repository directory of a machine; refuse anything but a machine id."""
        if not is_machine_id(machine_id):
            raise ConfigError(f"not a machine id: {machine_id!r}")
        return self.repos / machine_id

    @property
    def templates(self) -> Path:
        """Template homes' repositories: apart from <data>/repos, so that nothing that
        works on machines (reindex, drills, prune, reports) ever sees one."""
        return self.data / "templates"

    def template(self, template_id: str) -> Path:
        """Return the repository directory of a template; refuse anything but an id."""
        if not is_machine_id(template_id):
            raise ConfigError(f"not a template id: {template_id!r}")
        return self.templates / template_id


@dataclass(frozen=True)
class ReportConfig:
    """The [report] section: when a machine's newest backup is too old (hours), and
    where `serve` offers Prometheus metrics (a loopback HOST:PORT; empty: nowhere)."""

    warn_age: float = 48.0
    critical_age: float = 168.0
    metrics_listen: str = ""


@dataclass(frozen=True)
class DrillConfig:
    """The [drill] section: where drills extract archives (None: the layout's default)
    and the most bytes one drill may restore there (0: only free space limits it)."""

    scratch: Path | None = None
    max_bytes: int = 0


@dataclass(frozen=True)
class Limits:
    """The [server] keys that bound connections and sessions (see the admin guide):
    seconds a connection may take to log in, how many that have not logged in yet may
    wait (in all and from one address), and how many sessions (borg serve or RPC) may
    run (in all and per login)."""

    preauth_seconds: float = 20.0
    max_unauthenticated: int = 64
    max_unauthenticated_per_address: int = 8
    max_sessions: int = 128
    max_sessions_per_login: int = 8


@dataclass(frozen=True)
class IndexConfig:
    """The [index] section: where the index is, as a URL (empty: sqlite:///<data>/index.sqlite;
    or postgresql://USER@HOST/DATABASE, a libpq URL), how long one statement may take, and
    how many connections a process keeps to PostgreSQL at the most."""

    url: str = ""
    statement_timeout: float = 30.0
    pool_size: int = 16


@dataclass(frozen=True)
class NodeConfig:
    """The [node] section (issue 14, several `serve` nodes): this node's id (empty: the
    host's name; $HOMESYNC_NODE_ID wins over both), how often it writes its heartbeat
    (seconds), after how many missed heartbeats the others count it dead, and how long
    a SIGTERM lets running sessions finish (seconds); lease_seconds: how long a job's
    lease lasts unless its holder renews it (a dead holder's is taken over after that)."""

    id: str = ""
    heartbeat_seconds: float = 5.0
    dead_after: int = 3
    drain_seconds: float = 60.0
    lease_seconds: float = 60.0


@dataclass(frozen=True)
class ServerConfig:
    listen: str = DEFAULT_LISTEN
    storage_quota: str = ""
    keepalive_seconds: int = 30
    limits: Limits = field(default_factory=Limits)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    drill: DrillConfig = field(default_factory=DrillConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    node: NodeConfig = field(default_factory=NodeConfig)


NODE_VARIABLE = "HOMESYNC_NODE_ID"  # several nodes on one host (tests; a host serving two ports)


def node_id(config: ServerConfig) -> str:
    """Return this node's id: $HOMESYNC_NODE_ID, else [node] id, else the host's short
    name; raise ConfigError for one that cannot name borg's lock files."""
    found = os.environ.get(NODE_VARIABLE) or config.node.id or socket.gethostname().split(".")[0]
    if not valid_node_id(found):
        raise ConfigError(f"node id {found!r} is not usable (letters, digits, '.', '_', '-')",
                          f"set [node] id in server.toml or ${NODE_VARIABLE}")
    return found


def parse_listen(text: str) -> tuple[str, int]:
    """Given "HOST:PORT" (IPv6 as "[::1]:PORT"), return (host, port); raise ConfigError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ConfigError(f"invalid address {text!r}", "write it as HOST:PORT, e.g. 127.0.0.1:2222")
    return host.strip("[]"), int(port)


def resolve_data_dir(arg: str | None) -> Layout:
    """Given --data (or None), return the layout, falling back to $HOMESYNC_SERVER_DATA."""
    data = arg or os.environ.get("HOMESYNC_SERVER_DATA")
    if not data:
        raise ConfigError("no data directory", "pass --data DIR or set HOMESYNC_SERVER_DATA")
    return Layout(Path(data).absolute())


def load(layout: Layout) -> ServerConfig:
    """Read server.toml; raise ConfigError naming the file and every problem found."""
    path = layout.config_file
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found", "run `homesync-server init --data DIR` first") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    problems: list[str] = []
    limit_types = {f.name: type(f.default) for f in fields(Limits)}
    server = _section(raw, "server", {"listen": str, "storage_quota": str, "keepalive_seconds": int, **limit_types},
                      problems)
    limits = Limits(**{k: server.pop(k) for k in limit_types if k in server})
    problems += _quota_problems(server.get("storage_quota", ""))
    problems += [f"[server] {f.name} must be positive" for f in fields(Limits) if getattr(limits, f.name) <= 0]
    identity_types = {f.name: (tuple if f.name == "urls" else type(f.default)) for f in fields(IdentityConfig)}
    identity = _section(raw, "identity", identity_types, problems)
    if "urls" in identity:
        identity["urls"] = tuple(identity["urls"])
    report = _section(raw, "report", {"warn_age": float, "critical_age": float, "metrics_listen": str}, problems)
    problems += _report_problems(ReportConfig(**report))
    retention = settings_from_toml(raw.get("retention", {}), problems)
    drill = _drill_config(layout, _section(raw, "drill", {"scratch": str, "max_bytes": int}, problems), problems)
    index = _section(raw, "index", {"url": str, "statement_timeout": float, "pool_size": int}, problems)
    problems += _index_problems(IndexConfig(**index))
    node = _section(raw, "node", {"id": str, "heartbeat_seconds": float, "dead_after": int, "drain_seconds": float,
                                    "lease_seconds": float},
                    problems)
    problems += _node_problems(NodeConfig(**node))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    if "listen" in server:
        parse_listen(server["listen"])
    return ServerConfig(**server, limits=limits, identity=IdentityConfig(**identity),
                        report=ReportConfig(**report), retention=retention, drill=drill, index=IndexConfig(**index),
                        node=NodeConfig(**node))


def _index_problems(index: IndexConfig) -> list[str]:
    """Return what is wrong with the [index] section: an engine it does not know, or no timeout."""
    problems = []
    if index.url and not index.url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        problems.append("[index] url must start with sqlite:/// or postgresql://")
    if index.statement_timeout <= 0:
        problems.append("[index] statement_timeout must be positive (seconds)")
    if index.pool_size < 1:
        problems.append("[index] pool_size must be 1 or more (connections)")
    return problems


_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def valid_node_id(text: str) -> bool:
    """Return whether text may be a node's id: it names borg's lock files (BORG_HOST_ID)."""
    return bool(_NODE_ID.fullmatch(text))


def _node_problems(node: NodeConfig) -> list[str]:
    """Return what is wrong with the [node] section."""
    problems = []
    if node.id and not valid_node_id(node.id):
        problems.append("[node] id must be letters, digits, '.', '_' or '-' (at most 64), starting with a "
                        "letter or digit")
    if node.heartbeat_seconds <= 0 or node.lease_seconds <= 0 or node.drain_seconds < 0:
        problems.append("[node] heartbeat_seconds and lease_seconds must be positive, drain_seconds 0 or more")
    if node.dead_after < 2:
        problems.append("[node] dead_after must be at least 2 (missed heartbeats)")
    return problems


QUOTA_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
QUOTA_LEAST = 10 * 10**6  # borg serve refuses a smaller --storage-quota, and then every backup fails


def _quota_problems(quota: str) -> list[str]:
    """Return what is wrong with [server] storage_quota ('' is none): borg's sizes
    (500G, 1.5T; decimal units), at least 10M."""
    if not quota:
        return []
    number, unit = (quota[:-1], quota[-1]) if quota[-1].isalpha() else (quota, "")  # borg: upper case only
    try:
        size = float(number) * QUOTA_UNITS[unit]
    except (ValueError, KeyError):
        return [f"[server] storage_quota must be a size such as \"500G\" (got {quota!r})"]
    if size < QUOTA_LEAST:
        return [f"[server] storage_quota must be at least 10M: borg serve refuses less (got {quota!r})"]
    return []


def _drill_config(layout: Layout, section: dict, problems: list[str]) -> DrillConfig:
    """Return the [drill] section with its scratch directory filled in; add a problem
    for a relative scratch, one inside the data directory, or a negative max_bytes."""
    scratch = Path(section["scratch"]) if section.get("scratch") else layout.default_scratch
    if not scratch.is_absolute():
        problems.append("[drill] scratch must be an absolute path")
    elif scratch.resolve().is_relative_to(layout.data.resolve()):
        problems.append("[drill] scratch must be outside the data directory (a drill extracts untrusted archives)")
    if section.get("max_bytes", 0) < 0:
        problems.append("[drill] max_bytes must be 0 (no limit) or more")
    return DrillConfig(scratch, section.get("max_bytes", 0))


def _report_problems(report: ReportConfig) -> list[str]:
    """Return what is wrong with the [report] section: ages out of order, or metrics
    offered beyond loopback (they name every user and machine)."""
    problems = []
    if not 0 < report.warn_age < report.critical_age:
        problems.append("[report] needs 0 < warn_age < critical_age (hours)")
    if report.metrics_listen:
        try:
            host, _ = parse_listen(report.metrics_listen)
        except ConfigError:
            return problems + [f"[report] metrics_listen {report.metrics_listen!r} is not HOST:PORT"]
        if not (host == "localhost" or host == "::1" or host.startswith("127.")):
            problems.append("[report] metrics_listen must be a loopback address (127.0.0.1, ::1)")
    return problems


# A Python type in a section's description -> the kind the shared schema checks it as.
_KINDS = {str: "text", int: "count", float: "number", tuple: "strings", bool: "bool"}


def _section(raw: dict, name: str, types: dict[str, type], problems: list[str]) -> dict:
    """Return one table's values checked with the agent's schema (homesync.settings), the
    same messages for the same mistakes; add a line to problems for each."""
    values, found = settings.check_table(name, raw.get(name, {}), {k: _KINDS[t] for k, t in types.items()})
    problems += found
    return values


def render_default(listen: str) -> str:
    """Return the server.toml that `init` writes."""
    return f'''# homesync-server configuration. See docs/admin-guide.md.
[server]
listen = "{listen}"
# storage_quota = "500G"      # per machine repository (borg serve --storage-quota)
keepalive_seconds = 30
# preauth_seconds = 20                  # a connection not logged in by then is closed
# max_unauthenticated = 64              # connections waiting to log in, in all ...
# max_unauthenticated_per_address = 8   # ... and from one address (the oldest makes room)
# max_sessions = 128                    # borg serve and RPC sessions at once, in all ...
# max_sessions_per_login = 8            # ... and per machine key, grant or user

[identity]
backend = "local"             # or "ldap"; see the admin guide's LDAP section
# urls = ["ldap://127.0.0.1:389"]
# starttls = false
# ca_file = ""
# bind_dn = "cn=homesync,dc=example,dc=org"
# bind_password_file = "/etc/homesync/ldap-password"
# user_base = "ou=people,dc=example,dc=org"
# user_filter = "(uid={{username}})"
# admin_group = "cn=homesync-admins,ou=groups,dc=example,dc=org"
# account_filter = "(!(pwdAccountLockedTime=*))"   # only matching accounts may log in
# timeout = 5.0

[report]
warn_age = 48                 # hours: a machine whose newest backup is older is STALE
critical_age = 168            # hours: ... CRITICAL (`report` exits 6)
# metrics_listen = "127.0.0.1:9861"   # Prometheus metrics at http://HOST:PORT/metrics

[retention]                   # `homesync-server prune`, like borg prune; periods in UTC
keep_hourly = 24
keep_daily = 14
keep_weekly = 8
keep_monthly = 12
keep_yearly = 0
mass_change_share = 0.5       # a backup that wrote this share of its data anew ...
mass_change_factor = 4.0      # ... and this many times the machine's usual share freezes its pruning
# [retention.users.joe]       # per-user overrides; unset keys come from above
# keep_daily = 30

# [index]                     # where the index is; see the admin guide's PostgreSQL section
# url = "postgresql://homesync@db.example.org/homesync"   # default: sqlite:///<data>/index.sqlite
# statement_timeout = 30      # seconds one statement may take (PostgreSQL)
# pool_size = 16              # connections to PostgreSQL each process keeps at the most

# [node]                      # several `serve` nodes on one index; see the admin guide's nodes section
# id = ""                     # default: this host's name ($HOMESYNC_NODE_ID wins)
# heartbeat_seconds = 5       # how often this node says it is alive
# dead_after = 3              # missed heartbeats after which the other nodes count it dead
# drain_seconds = 60          # on SIGTERM: how long running sessions may go on
# lease_seconds = 60          # a job's lease (prune of a repository, drills) lasts this long unrenewed

# [drill]                     # `homesync-server drill`; see the admin guide's security model
# scratch = "/var/tmp/homesync-drill"   # where archives are extracted; outside the data directory
# max_bytes = 0                         # the most one drill may restore (0: free space only)
'''
