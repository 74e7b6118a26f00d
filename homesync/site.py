"""The site configuration an OS image carries: /etc/homesync/agent.toml and
$XDG_CONFIG_DIRS/homesync/agent.toml name the backup server (addresses, fingerprint),
so that a user sets a computer up with nothing but their password. The user's own
config.toml is read above it."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from homesync.errors import ConfigError

ENV_SYSTEM_DIR = "HOMESYNC_SYSTEM_CONFIG_DIR"  # tests (and unusual images) move /etc/homesync
SYSTEM_DIR = "/etc/homesync"
FILE_NAME = "agent.toml"
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_KEYS = {"address": str, "addresses": list, "fingerprint": str}


@dataclass(frozen=True)
class Site:
    """The server this site's computers use: addresses tried in order, its host key."""

    addresses: tuple[str, ...]
    fingerprint: str
    files: tuple[Path, ...]


def candidates() -> list[Path]:
    """Return the site files in increasing importance: /etc/homesync, then the
    $XDG_CONFIG_DIRS entries from the last to the first (the first is the most important)."""
    system = Path(os.environ.get(ENV_SYSTEM_DIR) or SYSTEM_DIR) / FILE_NAME
    xdg = [d for d in (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if os.path.isabs(d)]
    return [system] + [Path(d) / "homesync" / FILE_NAME for d in reversed(xdg)]


def load() -> Site | None:
    """Return the site configuration, or None if the image carries none. Raise
    ConfigError naming the files and every problem found in them."""
    merged: dict = {}
    found: list[Path] = []
    problems: list[str] = []
    for path in candidates():
        try:
            raw = tomllib.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            problems.append(f"{path}: {e}")
            continue
        if not raw:  # all comments, as the homesync package ships /etc/homesync/agent.toml: no site yet
            continue
        found.append(path)
        server, file_problems = _checked(raw)
        problems += [f"{path}: {p}" for p in file_problems]
        if "address" in server or "addresses" in server:  # a more important file's list replaces, not extends
            merged.pop("address", None), merged.pop("addresses", None)
        merged.update(server)
    if not found and not problems:
        return None
    if not problems and "fingerprint" not in merged:
        problems.append(f"{found[-1]}: [server] fingerprint is missing")
    if not problems and not (merged.get("address") or merged.get("addresses")):
        problems.append(f"{found[-1]}: [server] address (or addresses) is missing")
    if problems:
        raise ConfigError("the site configuration is not valid: " + "; ".join(problems),
                          "ask your admin: the file comes with the computer's image")
    addresses = tuple(merged["addresses"]) if merged.get("addresses") else (merged["address"],)
    return Site(addresses, merged["fingerprint"], tuple(found))


def _checked(raw: dict) -> tuple[dict, list[str]]:
    """Given one parsed site file, return its [server] values and every problem in it."""
    problems = [f"unknown section [{s}]" for s in raw if s != "server"]
    server = raw.get("server", {})
    if not isinstance(server, dict):
        return {}, problems + ["[server] must be a table"]
    good = {}
    for key, value in server.items():
        if key not in _KEYS:
            problems.append(f"[server] unknown key {key!r}")
        elif not isinstance(value, _KEYS[key]) or (key == "addresses" and not all(isinstance(a, str) for a in value)):
            problems.append(f"[server] {key} must be {'a list of strings' if key == 'addresses' else 'a string'}")
        elif key == "fingerprint" and not _FINGERPRINT.fullmatch(value):
            problems.append(f"[server] fingerprint {value!r} is not a SHA256:… host key fingerprint")
        else:
            good[key] = value
    return good, problems


def beneath(raw: dict, site: Site | None) -> dict:
    """Given a user's parsed config.toml, return it with the site's server address and
    fingerprint filled in where the user's file has none (the user's values win)."""
    if site is None or not isinstance(raw.get("server", {}), dict):
        return raw
    server = dict(raw.get("server", {}))
    if len(site.addresses) > 1 and "address" not in server and "addresses" not in server:
        server["addresses"] = list(site.addresses)  # tried in turn, as a policy's
    server.setdefault("address", site.addresses[0])
    server.setdefault("fingerprint", site.fingerprint)
    return dict(raw, server=server)
