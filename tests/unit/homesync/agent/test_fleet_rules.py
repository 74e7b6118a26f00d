"""The network side of the fleet policy: no rule anywhere makes the server the link, new
rules are applied to the connections already read, and no policy yet holds backups."""

from __future__ import annotations

from homesync.agent import netwatch, policy
from homesync.agent.netwatch import ActiveConnection, NetworkManagerMonitor, NetworkRules

OFFICE = ActiveConnection("Office", domains=("corp.example.com",))
HOME = ActiveConnection("Home", type=netwatch.WIFI, ssid=b"HomeNet")


def _monitor(rules: NetworkRules) -> tuple[NetworkManagerMonitor, list]:
    seen: list = []
    monitor = NetworkManagerMonitor(None, rules, seen.append, clock=lambda: 100.0)
    return monitor, seen


def test_no_rule_means_the_network_says_nothing():
    monitor, _ = _monitor(NetworkRules())
    view = monitor._view([HOME], metered=False)
    assert not view.known and view.reason == netwatch.NO_RULES
    state = policy.AgentState(network=view, server=policy.ServerView(True, 99.0))
    assert isinstance(policy.decide(state, 100.0), policy.Run)  # no backup yet, the server answers


def test_new_rules_judge_the_connections_already_read():
    monitor, seen = _monitor(NetworkRules())
    monitor.connections = [HOME, OFFICE]
    monitor.view = monitor._view(monitor.connections, False)
    monitor.set_rules(NetworkRules(corporate_domains=("corp.example.com",)))
    assert seen[-1].known and seen[-1].on_corporate and seen[-1].via == "Office"
    monitor.set_rules(NetworkRules(corporate_ssids=("CorpWiFi",)))
    assert seen[-1].known and not seen[-1].on_corporate
    count = len(seen)
    monitor.set_rules(NetworkRules(corporate_ssids=("CorpWiFi",)))  # the same rules: nothing to say
    assert len(seen) == count


def test_without_a_policy_nothing_is_backed_up_and_the_reason_says_why():
    state = policy.AgentState(policy_missing="waiting for the fleet policy: the backup server did not answer")
    decision = policy.decide(state, 100.0)
    assert isinstance(decision, policy.Skip) and decision.code == "no_policy" and decision.waits_for_event
