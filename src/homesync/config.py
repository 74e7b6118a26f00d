"""The agent's configuration and where it keeps things: config.toml under
$XDG_CONFIG_HOME/homesync, keys under $XDG_DATA_HOME/homesync, state under
$XDG_STATE_HOME/homesync. Loading collects every problem and reports them at once.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from homesync.errors import ConfigError, NotEnrolledError

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


@dataclass(frozen=True)
class NetworkSettings:
    corporate_domains: tuple[str, ...] = ()
    corporate_ssids: tuple[str, ...] = ()
    corporate_connections: tuple[str, ...] = ()
    allow_metered: bool = False


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
    agent: dict = field(default_factory=dict)

    def exclusion_patterns(self, paths: Paths) -> list[str]:
        """Return borg patterns (relative to the source) for everything not backed up."""
        patterns = [f"sh:{p}" for p in DEFAULT_EXCLUDES] if self.default_excludes else []
        for own in paths.own():
            try:
                patterns.append("sh:" + str(own.resolve().relative_to(self.source.resolve())))
            except ValueError:
                continue  # outside the source: nothing to exclude
        return patterns + list(self.exclude)


_SCHEMA = {
    "server": {"address": str, "fingerprint": str, "user": str},
    "machine": {"id": str, "name": str},
    "backup": {"source": str, "exclude": list, "default_excludes": bool},
    "network": {"corporate_domains": list, "corporate_ssids": list, "corporate_connections": list,
                "allow_metered": bool},
    "agent": None,  # checked by the agent itself
}


def load(paths: Paths) -> AgentConfig:
    """Read config.toml; raise NotEnrolledError if there is none, ConfigError listing
    every problem otherwise."""
    path = paths.config_file
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NotEnrolledError("this computer is not enrolled",
                               "run `homesync enroll --server HOST:PORT --user NAME --machine NAME --fingerprint SHA256:…`") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    problems = _check(raw)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    backup, network = raw.get("backup", {}), raw.get("network", {})
    return AgentConfig(
        server=raw["server"]["address"], fingerprint=raw["server"]["fingerprint"], user=raw["server"]["user"],
        machine_id=raw["machine"]["id"], machine_name=raw["machine"]["name"],
        source=Path(os.path.expanduser(backup.get("source", "~"))),
        exclude=tuple(backup.get("exclude", ())), default_excludes=backup.get("default_excludes", True),
        network=NetworkSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in network.items()}),
        agent=raw.get("agent", {}))


def _check(raw: dict) -> list[str]:
    problems = []
    for section, keys in _SCHEMA.items():
        value = raw.get(section, {})
        if not isinstance(value, dict):
            problems.append(f"[{section}] must be a table")
            continue
        for key, item in value.items():
            if keys is None:
                continue
            if key not in keys:
                problems.append(f"[{section}] unknown key {key!r}")
            elif not isinstance(item, keys[key]):
                problems.append(f"[{section}] {key} must be a {keys[key].__name__}")
            elif keys[key] is list and not all(isinstance(x, str) for x in item):
                problems.append(f"[{section}] {key} must be a list of strings")
    for section, key in (("server", "address"), ("server", "fingerprint"), ("server", "user"),
                         ("machine", "id"), ("machine", "name")):
        if key not in raw.get(section, {}):
            problems.append(f"[{section}] {key} is missing")
    problems += [f"unknown section [{s}]" for s in raw if s not in _SCHEMA]
    return problems


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
"""


def write_private(path: Path, data: bytes) -> None:
    """Write data to a new file, mode 0600 from the first byte, via a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
