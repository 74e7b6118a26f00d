"""The fleet policy on this computer: asking the server for it (RPC `policy.get` with the
machine key), keeping the last one (0600) for when the server cannot be reached, and the
configuration the agent runs with: config.toml laid over the policy where users may override.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from homesync import config as agent_config, fleet_policy, link, protocol, transport
from homesync.config import AgentConfig, Paths

log = logging.getLogger(__name__)

CACHE_NAME = "policy.json"
ANSWERED_NAME = "server-answered"  # the server address that answered last: tried first next time
RPC_TIMEOUT = 10.0
PROBE_TIMEOUT = 2.0  # per server address, before trying the next


@dataclass(frozen=True)
class Policy:
    """The fleet policy as the server sent it: its version, values ("table.key" → raw
    TOML value) and the layer each came from. Version 0: the server has none."""

    version: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    fetched_at: float = 0.0

    def as_json(self) -> dict:
        return {"version": self.version, "values": self.values, "sources": self.sources,
                "fetched_at": self.fetched_at}


@dataclass(frozen=True)
class Effective:
    """What the agent runs with: the configuration, the policy it came from (None: no
    policy known yet), and the source of every setting."""

    config: AgentConfig
    policy: Policy | None
    sources: dict[str, str]

    def ignored(self) -> list[str]:
        """Return the settings whose local value is ignored (users may not override them)."""
        return sorted(k for k, v in self.sources.items() if "ignored" in v)

    def addresses(self) -> list[str]:
        """Return the server addresses to try, in order: the policy's, else config.toml's
        (its `addresses`, else its one `address`)."""
        return list(self.config.addresses or [self.config.server])

    def no_rules(self) -> bool:
        """Return True if no corporate-network rule is set anywhere."""
        network = self.config.network
        return not (network.corporate_domains or network.corporate_ssids or network.corporate_connections)


def cache_path(paths: Paths):
    return paths.state_dir / CACHE_NAME


def read_cache(paths: Paths) -> Policy | None:
    """Return the last policy received, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(cache_path(paths).read_text())
        return Policy(int(data["version"]), dict(data["values"]), dict(data["sources"]), float(data["fetched_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring the cached fleet policy %s: %s", cache_path(paths), e)
        return None


def write_cache(paths: Paths, policy: Policy) -> None:
    agent_config.write_private(cache_path(paths), json.dumps(policy.as_json(), sort_keys=True).encode())


def effective(paths: Paths, policy: Policy | None) -> Effective:
    """Return the configuration config.toml and the policy give; raise ConfigError (a bad
    config.toml) or NotEnrolledError as config.load does."""
    local = agent_config.read_raw(paths)
    values, sources = (policy.values, policy.sources) if policy else ({}, {})
    merged, origin = fleet_policy.over_local(values, sources, _without_empty_rules(local))
    return Effective(agent_config.from_raw(merged, paths.config_file), policy, fleet_policy.settings_sources(origin))


def load(paths: Paths) -> Effective:
    """Return what the agent runs with, from config.toml and the cached policy."""
    return effective(paths, read_cache(paths))


def answering(effective: Effective, paths: Paths | None = None, timeout: float = PROBE_TIMEOUT) -> AgentConfig:
    """Return the configuration with the first server address that answers (see
    first_answering), for a manual backup outside the agent."""
    address = first_answering(effective.addresses(), paths, timeout)
    return effective.config if address == effective.config.server else dataclasses.replace(effective.config,
                                                                                             server=address)


def first_answering(addresses: list[str], paths: Paths | None = None, timeout: float = PROBE_TIMEOUT) -> str:
    """Return the first of addresses that answers, as the agent fails over
    (reachability.first_answering; the one that answered last, kept in paths' state,
    first, and kept there when it answers), for commands outside the agent (a manual
    backup, setup's login); with none answering, the last (the command then says it
    cannot reach it). One address that resolves to one IP address is not probed."""
    from homesync.agent import reachability  # asyncio: only when there is an address to choose

    async def choose() -> tuple[str, reachability.Reachability] | None:
        found = await reachability.candidates(addresses)
        if len(found) < 2:
            return None
        return await reachability.first_answering([c.address for c in found], timeout=timeout,
                                                  preferred=last_answered(paths) if paths else None,
                                                  resolve=lambda a: [a])
    chosen = asyncio.run(choose())
    if chosen is None:
        return addresses[0]
    address, result = chosen
    if result.ok and paths is not None:
        remember_answered(paths, address)
    if address != addresses[0]:
        log.info("using the backup server at %s (%s)", address, result.detail)
    return address


def last_answered(paths: Paths) -> str | None:
    """Return the server address that answered last (the agent's or a manual backup's), or None."""
    try:
        return paths.state_dir.joinpath(ANSWERED_NAME).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def remember_answered(paths: Paths, address: str) -> None:
    """Keep the address that answered, to be tried first next time (a failure to write it costs only time)."""
    if last_answered(paths) == address:
        return
    try:
        agent_config.write_private(paths.state_dir / ANSWERED_NAME, address.encode() + b"\n")
    except OSError as e:
        log.info("could not keep the server address that answered: %s", e)


def _without_empty_rules(local: dict) -> dict:
    """Return config.toml's tables without empty corporate-network lists: the enrollment
    template writes `corporate_domains = []`, which says nothing and must not hide the policy's."""
    network = local.get("network")
    if not isinstance(network, dict):
        return local
    kept = {k: v for k, v in network.items() if not (k.startswith("corporate_") and v == [])}
    return dict(local, network=kept)


def fetch(config: AgentConfig, paths: Paths, applied: int | None) -> Policy:
    """Ask the server for this machine's policy (saying which version runs now); raise HomesyncError."""
    with link.machine_session(config, paths) as session:
        rpc = transport.RpcClient(session.exec(protocol.RPC_COMMAND, timeout=RPC_TIMEOUT), session.address)
        answer = rpc.call("policy.get", **({"applied": applied} if applied is not None else {}))
    return Policy(int(answer["version"]), dict(answer["values"]), dict(answer["sources"]), time.time())
