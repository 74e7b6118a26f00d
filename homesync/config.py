"""The agent's configuration and where it keeps things: config.toml under
$XDG_CONFIG_HOME/homesync, keys under $XDG_DATA_HOME/homesync, state under
$XDG_STATE_HOME/homesync. Loading collects every problem and reports them at once.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from homesync import borg
from homesync import settings as schema
from homesync import site
from homesync.errors import ConfigError, NotEnrolledError
from homesync.files import write_private  # noqa: F401  (re-exported: the agent's files are written with it)

DEFAULT_EXCLUDES = (".cache", ".local/share/Trash", ".thumbnails", ".ccache", ".local/share/containers")
MARKERS = (".nobackup",)


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


@dataclass(frozen=True)
class Paths:
    """Where the agent's own files live; none of them is ever backed up or restored over."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    cache_dir: Path

    @classmethod
    def from_environment(cls) -> "Paths":
        return cls(_xdg("XDG_CONFIG_HOME", ".config") / "homesync",
                   _xdg("XDG_DATA_HOME", ".local/share") / "homesync",
                   _xdg("XDG_STATE_HOME", ".local/state") / "homesync",
                   _xdg("XDG_CACHE_HOME", ".cache") / "homesync")

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def machine_key(self) -> Path:
        return self.data_dir / "machine_key"

    @property
    def passphrase_file(self) -> Path:
        return self.data_dir / "passphrase"

    @property
    def borg_config(self) -> Path:
        return self.data_dir / "borg"

    @property
    def borg_cache(self) -> Path:
        return self.cache_dir / "borg"

    @property
    def last_backup(self) -> Path:
        return self.state_dir / "last-backup.json"

    def own(self) -> tuple[Path, ...]:
        """Return homesync's own directories (excluded from backups, protected on restore)."""
        return (self.config_dir, self.data_dir, self.state_dir, self.cache_dir)

    def own_inside(self, root: Path) -> list[str]:
        """Return homesync's own directories that lie inside root, relative to it."""
        inside = []
        for own in self.own():
            try:
                inside.append(str(own.resolve().relative_to(root.resolve())))
            except ValueError:
                continue  # outside root
        return inside


@dataclass(frozen=True)
class NetworkSettings:
    corporate_domains: tuple[str, ...] = ()
    corporate_ssids: tuple[str, ...] = ()
    corporate_connections: tuple[str, ...] = ()
    allow_metered: bool = False


@dataclass(frozen=True)
class AgentSettings:
    """The [agent] table: when the background agent backs up (durations in seconds)."""

    debounce: float = 60.0                  # quiet time after the last change before a backup
    settle_limit: float = 600.0             # back up anyway after this long of continuous changes
    min_interval: float = 900.0             # at most one change-driven backup this often
    max_age: float = 86400.0                # back up at least this often while on the network
    retry_min: float = 60.0                 # first wait after a failed backup (then doubling)
    retry_max: float = 3600.0               # longest wait between retries
    min_battery_percent: float = 20.0       # on battery below this charge: wait for mains
    recovery_point_target: float = 3 * 86400.0  # older than this: "your files are not backed up"
    scan_interval: float = 300.0            # change scans when inotify cannot watch the whole tree
    notifications: bool = True
    server_timeout: float = 120.0           # give up when the server sends nothing this long while borg waits
    policy_interval: float = 3600.0         # ask the server for the fleet policy at least this often


@dataclass(frozen=True)
class AgentConfig:
    server: str
    fingerprint: str
    user: str
    machine_id: str
    machine_name: str
    source: Path
    exclude: tuple[str, ...] = ()
    default_excludes: bool = True
    network: NetworkSettings = field(default_factory=NetworkSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    upload_ratelimit: float = 0.0           # KiB/s for borg's --upload-ratelimit; 0: unlimited
    checkpoint_interval: float = borg.CHECKPOINT_SECONDS  # borg's --checkpoint-interval: what an interrupted backup keeps
    addresses: tuple[str, ...] = ()         # [server] addresses (the fleet policy's, else config.toml's): tried in turn

    def exclusion_patterns(self, paths: Paths) -> list[str]:
        """Return borg patterns (relative to the source) for everything not backed up."""
        patterns = [f"sh:{p}" for p in DEFAULT_EXCLUDES] if self.default_excludes else []
        patterns += [f"sh:{own}" for own in paths.own_inside(self.source)]
        return patterns + list(self.exclude)


_IDENTITY_SCHEMA = {"server": {"address": "text", "addresses": "addresses", "fingerprint": "text", "user": "text"},
                    "machine": {"id": "text", "name": "text"}}
_LOCAL_ONLY = {"backup": frozenset({"source"})}  # settings a fleet policy cannot set
_SETTING_TABLES = ("backup", "network", "agent")  # checked by the shared schema (homesync.settings)


def load(paths: Paths) -> AgentConfig:
    """Read config.toml; raise NotEnrolledError if there is none, ConfigError listing
    every problem otherwise."""
    return from_raw(read_raw(paths), paths.config_file)


def read_raw(paths: Paths) -> dict:
    """Return config.toml as parsed TOML; raise NotEnrolledError if there is none (or it
    holds settings only), ConfigError if it is not TOML."""
    path = paths.config_file
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NotEnrolledError("this computer is not enrolled", _not_enrolled_hint()) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    if "server" not in raw and "machine" not in raw:
        raise NotEnrolledError(f"this computer is not enrolled ({path} holds settings only)",
                               "run `homesync enroll …` or `homesync restore --adopt …`; the settings are kept")
    server = raw.get("server", {})
    if isinstance(server, dict) and not ("address" in server and "fingerprint" in server):
        raw = site.beneath(raw, site.load())  # read only when needed: a full config.toml never depends on it
    return raw


def from_raw(raw: dict, path: Path) -> AgentConfig:
    """Given config.toml's tables (possibly merged with the fleet policy), return the
    configuration; raise ConfigError naming path and listing every problem."""
    problems = _check(raw)
    tables = {}
    for table in _SETTING_TABLES:
        tables[table], found = schema.check_table(table, raw.get(table, {}), schema.SETTINGS[table],
                                                  _LOCAL_ONLY.get(table, frozenset()))
        problems += found
    source, found = schema.check_table("backup", raw.get("backup", {}), {"source": "text"},
                                       frozenset(schema.SETTINGS["backup"]))
    problems += found
    source = source.get("source", "~")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    backup, network = tables["backup"], tables["network"]
    addresses = tuple(raw["server"].get("addresses") or ())
    return AgentConfig(
        server=raw["server"].get("address") or addresses[0], addresses=addresses, fingerprint=raw["server"]["fingerprint"], user=raw["server"]["user"],
        machine_id=raw["machine"]["id"], machine_name=raw["machine"]["name"],
        source=Path(os.path.expanduser(source)),
        exclude=tuple(backup.get("exclude", ())), default_excludes=backup.get("default_excludes", True),
        network=NetworkSettings(**network), agent=AgentSettings(**tables["agent"]),
        upload_ratelimit=backup.get("upload_ratelimit", 0.0),
        checkpoint_interval=backup.get("checkpoint_interval", borg.CHECKPOINT_SECONDS))


def _not_enrolled_hint() -> str:
    """Return what to do on a computer that is not enrolled: setup where the image says
    where the server is, enroll by hand elsewhere."""
    try:
        found = site.load()
    except ConfigError:
        found = None
    if found is not None:
        return "run `homesync setup`: it needs only your password"
    return "run `homesync enroll --server HOST:PORT --user NAME --machine NAME --fingerprint SHA256:…`"


def _check(raw: dict) -> list[str]:
    """Return the problems of the identity tables and the unknown tables."""
    problems = []
    for section, kinds in _IDENTITY_SCHEMA.items():
        problems += schema.check_table(section, raw.get(section, {}), kinds)[1]
    for section, key in (("server", "address"), ("server", "fingerprint"), ("server", "user"),
                         ("machine", "id"), ("machine", "name")):
        table = raw.get(section, {})
        if isinstance(table, dict) and key not in table and not (key == "address" and table.get("addresses")):
            problems.append(f"[{section}] {key} is missing")
    known = set(_IDENTITY_SCHEMA) | set(_SETTING_TABLES)
    problems += [f"unknown section [{s}]" for s in raw if s not in known]
    return problems


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
_IDENTITY = ("server", "machine")


def render_keeping(existing: str | None, server: str, fingerprint: str, user: str, machine_id: str,
                   machine_name: str) -> str:
    """Return the config.toml for a new identity; the settings of an existing file (every
    table but [server] and [machine], comments included) are kept as they were."""
    fresh = render(server, fingerprint, user, machine_id, machine_name)
    if not existing:
        return fresh
    kept, keeping = [], True
    for line in existing.splitlines(keepends=True):
        table = _TABLE.match(line)
        if table:
            keeping = table[1] not in _IDENTITY
        if keeping:
            kept.append(line)
    settings = "".join(kept).strip()
    identity = fresh[:fresh.index("[backup]")]
    merged = identity + "\n# kept from this computer's earlier config.toml\n" + settings + "\n"
    try:
        tomllib.loads(merged)
    except tomllib.TOMLDecodeError:
        return fresh + "\n# the earlier config.toml could not be kept; it was:\n" + "".join(
            f"# {line}\n" for line in existing.splitlines())
    return merged


def render(server: str, fingerprint: str, user: str, machine_id: str, machine_name: str) -> str:
    """Return the config.toml that enrollment writes (TOML strings are JSON-escaped)."""
    q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731 - a JSON string is a TOML basic string
    return f"""# homesync agent configuration; see the user guide.
[server]
address = {q(server)}
fingerprint = {q(fingerprint)}
user = {q(user)}

[machine]
id = {q(machine_id)}
name = {q(machine_name)}

[backup]
# source = "~"                  # what is backed up (default: your home directory)
# exclude = ["sh:Videos/raw"]   # extra borg patterns, relative to the source
# default_excludes = true       # ~/.cache, the trash, CACHEDIR.TAG and .nobackup directories

[network]
# The agent backs up by itself while any active connection matches one of these.
corporate_domains = []
corporate_ssids = []
corporate_connections = []
allow_metered = false

[agent]
# When the background agent (`homesync agent`) backs up; durations as "90s", "15m", "2h", "3d".
# debounce = "1m"               # quiet time after the last change before a backup
# min_interval = "15m"          # at most one change-driven backup this often
# max_age = "1d"                # back up at least this often while on the corporate network
# min_battery_percent = 20      # on battery below this charge, wait for mains
# recovery_point_target = "3d"  # warn on the desktop when the last backup is older than this
# server_timeout = "2m"         # a backup or restore stops when the server answers nothing this long
"""
