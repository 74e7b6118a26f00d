"""The one schema of the agent's settings: what config.toml's setting tables and the
server's fleet policy may hold, how each value is checked, and the messages for what is
wrong. Both the agent's config loader and `homesync-server policy set` use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|min|h|d)?\s*")
_UNITS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(KiB/s|MiB/s|GiB/s|kB/s|MB/s)?\s*")
_RATE_UNITS = {None: 1, "KiB/s": 1, "MiB/s": 1024, "GiB/s": 1024 * 1024, "kB/s": 1000 / 1024, "MB/s": 1e6 / 1024}
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_ADDRESS = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")

DURATION_TEXT = 'a duration ("90s", "15m", "2h", "3d" or seconds)'


def number(value: object) -> float | None:
    """Given a TOML value, return it as a non-negative finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def duration(value: object) -> float | None:
    """Given seconds or text such as "15m", return seconds, or None if it is neither."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        return float(match[1]) * _UNITS[match[2]] if match else None
    return number(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _percent(value: object) -> float | None:
    parsed = number(value)
    return parsed if parsed is not None and parsed <= 100 else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _strings(value: object) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return tuple(value)
    return None


def is_domain(text: str) -> bool:
    """Return True if text is a DNS domain (letters, digits and hyphens in dot-separated labels)."""
    labels = text.strip().lstrip("~").strip(".").lower().split(".")
    return 0 < len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _domains(value: object) -> tuple[str, ...] | None:
    found = _strings(value)
    return found if found is not None and all(is_domain(d) for d in found) else None


def _rate(value: object) -> float | None:
    """Given KiB/s as a number or text ("500KiB/s", "10MiB/s"), return KiB/s (0: unlimited)."""
    if isinstance(value, str):
        match = _RATE.fullmatch(value)
        return float(match[1]) * _RATE_UNITS[match[2]] if match else None
    return number(value)


def _addresses(value: object) -> tuple[str, ...] | None:
    found = _strings(value)
    if not found or not all(_ADDRESS.fullmatch(a) and 0 < int(a.rsplit(":", 1)[1]) < 65536 for a in found):
        return None
    return found


def _keys(value: object) -> tuple[str, ...] | None:
    found = _strings(value)
    return found if found is not None and all(k in OVERRIDABLE or k.endswith(".*") and k[:-2] in SETTINGS
                                              for k in found) else None


# kind -> (parse, what a good value is); parse returns None for a bad value.
KINDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "duration": (duration, DURATION_TEXT),
    "text": (_text, "a string"),
    "count": (_count, "a whole number (0 or more)"),
    "number": (number, "a number (0 or more)"),
    "percent": (_percent, "a percentage (0-100)"),
    "switch": (_bool, "true or false"),
    "bool": (_bool, "a bool"),
    "strings": (_strings, "a list of strings"),
    "domains": (_domains, 'a list of DNS domains (e.g. ["corp.example.com"])'),
    "rate": (_rate, 'an upload rate in KiB/s (a number, or "500KiB/s", "10MiB/s"; 0 = unlimited)'),
    "addresses": (_addresses, 'a list of HOST:PORT addresses (e.g. ["backup.example.org:2222"])'),
    "keys": (_keys, 'a list of settings such as "agent.debounce" or "network.*"'),
}

# The settings a fleet policy may set, by table, with the kind of each value. config.toml
# holds the same tables (plus its identity, and [backup] source, which are its own).
SETTINGS: dict[str, dict[str, str]] = {
    "network": {"corporate_domains": "domains", "corporate_ssids": "strings", "corporate_connections": "strings",
                "allow_metered": "bool"},
    "agent": {"debounce": "duration", "settle_limit": "duration", "min_interval": "duration",
              "max_age": "duration", "retry_min": "duration", "retry_max": "duration",
              "min_battery_percent": "percent", "recovery_point_target": "duration",
              "scan_interval": "duration", "notifications": "switch", "server_timeout": "duration",
              "policy_interval": "duration"},
    "backup": {"exclude": "strings", "default_excludes": "bool", "upload_ratelimit": "rate",
               "checkpoint_interval": "duration"},
    "server": {"addresses": "addresses"},
    "policy": {"user_may_override": "keys"},
}
# What a user's config.toml may override: every setting but the policy's own and the addresses.
OVERRIDABLE = frozenset(f"{table}.{key}" for table, keys in SETTINGS.items() for key in keys
                        if table not in ("policy", "server"))


def check_table(table: str, raw: object, kinds: dict[str, str], extra: frozenset[str] = frozenset()
                ) -> tuple[dict[str, Any], list[str]]:
    """Given one raw TOML table, return its parsed values and every problem found in it
    ("[agent] unknown key 'x'", "[agent] debounce must be a duration …"). Keys in extra
    are known but checked by the caller."""
    if not isinstance(raw, dict):
        return {}, [f"[{table}] must be a table"]
    values, problems = {}, []
    for key, value in raw.items():
        if key in extra:
            continue
        if key not in kinds:
            problems.append(f"[{table}] unknown key {key!r}")
            continue
        parse, what = KINDS[kinds[key]]
        parsed = parse(value)
        if parsed is None:
            problems.append(f"[{table}] {key} must be {what}")
        else:
            values[key] = parsed
    return values, problems


def check_policy(raw: dict) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Given a policy document (parsed TOML), return its parsed values by table and every
    problem in it; unknown tables and keys are problems."""
    values, problems = {}, []
    for table, content in raw.items():
        if table not in SETTINGS:
            problems.append(f"unknown section [{table}]")
            continue
        parsed, found = check_table(table, content, SETTINGS[table])
        values[table], problems = parsed, problems + found
    return values, problems


def flatten(document: dict) -> dict[str, Any]:
    """Given {table: {key: value}}, return {"table.key": value}."""
    return {f"{table}.{key}": value for table, keys in document.items() if isinstance(keys, dict)
            for key, value in keys.items()}


def unflatten(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Given {"table.key": value}, return {table: {key: value}}."""
    document: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        table, key = dotted.split(".", 1)
        document.setdefault(table, {})[key] = value
    return document


def may_override(dotted: str, allowed: tuple[str, ...] | None) -> bool:
    """Given "table.key" and the policy's user_may_override (None: not restricted), return
    True if a user's config.toml may set it."""
    if dotted not in OVERRIDABLE:
        return False
    return allowed is None or dotted in allowed or f"{dotted.split('.')[0]}.*" in allowed
