"""The agent's start: a fleet policy that arrives while the network monitor is still
being opened (the policy follower runs alongside) reaches the monitor, instead of the
monitor judging connections by the rules from before the policy."""

from __future__ import annotations

import asyncio
import dataclasses

from homesync import config
from homesync.agent import daemon, fleet
from homesync.agent.notify import NullNotifier
from homesync.agent.policy import NetworkView
from tests.support.agent_config import BASE, config_paths



class Monitor:
    """A network monitor that only records the rules it is given."""

    def __init__(self, rules) -> None:
        self.rules = rules
        self.view = NetworkView(known=True, reason="")

    def set_rules(self, rules) -> None:
        self.rules = rules


class Watcher:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def start(self) -> None:
        pass


class Power:
    state = None


def test_a_policy_applied_while_the_network_monitor_opens_reaches_the_monitor(tmp_path, monkeypatch):
    paths = config_paths(tmp_path, BASE + f'[backup]\nsource = "{tmp_path / "home"}"\n')
    local = config.load(paths)
    assert local.network.corporate_domains == ()
    agent = daemon.Agent(local, paths)
    ruled = dataclasses.replace(local, network=dataclasses.replace(local.network,
                                                                   corporate_domains=("corp.example.com",)))

    async def open_network_monitor(rules, on_change):
        agent._apply_policy(fleet.Effective(ruled, None, {}))  # the follower, while NetworkManager is asked
        return Monitor(rules)

    async def open_power_monitor(on_change):
        return Power()

    async def open_notifier():
        return NullNotifier("test")

    monkeypatch.setattr(daemon, "open_network_monitor", open_network_monitor)
    monkeypatch.setattr(daemon, "open_power_monitor", open_power_monitor)
    monkeypatch.setattr(daemon, "open_notifier", open_notifier)
    monkeypatch.setattr(daemon, "Watcher", Watcher)
    asyncio.run(agent._open_parts())
    assert agent.network.rules.corporate_domains == ("corp.example.com",)
