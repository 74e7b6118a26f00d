"""Several server addresses on the agent's side: config.toml's `[server] addresses`, the
fleet policy's over them, and a name resolved (real getaddrinfo) into each of its
addresses."""

from __future__ import annotations

import socket

import pytest

from homesync import config, fleet_policy, site, transport
from tests.support.agent_config import IDENTITY, config_paths



def _paths(tmp_path, server: str) -> config.Paths:
    return config_paths(tmp_path, "[server]\n" + server + IDENTITY)


def test_config_toml_may_list_several_addresses_without_an_address(tmp_path):
    from homesync.agent import fleet
    paths = _paths(tmp_path, 'addresses = ["node1.example.org:2222", "[::1]:2223"]\n')
    loaded = fleet.load(paths)
    assert loaded.config.server == "node1.example.org:2222"
    assert loaded.addresses() == ["node1.example.org:2222", "[::1]:2223"]
    assert loaded.sources["server.addresses"] == fleet_policy.LOCAL and not loaded.ignored()


def test_one_address_alone_is_the_only_one(tmp_path):
    from homesync.agent import fleet
    assert fleet.load(_paths(tmp_path, 'address = "a:1"\n')).addresses() == ["a:1"]


def test_a_bad_address_in_the_list_is_named(tmp_path):
    with pytest.raises(config.ConfigError, match=r"\[server\] addresses must be a list of HOST:PORT"):
        config.load(_paths(tmp_path, 'addresses = ["no port"]\n'))


def test_the_policys_addresses_win_over_config_tomls():
    local = {"server": {"address": "x:1", "addresses": ["x:1", "y:2"]}}
    merged, origin = fleet_policy.over_local({"server.addresses": ["p:1", "q:2"]}, {"server.addresses": "site"},
                                             local)
    assert merged["server"]["addresses"] == ["p:1", "q:2"] and merged["server"]["address"] == "p:1"
    assert origin["server.addresses"] == "site (local value ignored)"
    merged, origin = fleet_policy.over_local({}, {}, local)
    assert merged["server"]["addresses"] == ["x:1", "y:2"] and origin["server.addresses"] == fleet_policy.LOCAL


def test_a_site_file_with_several_addresses_gives_them_all():
    found = site.Site(("n1:2222", "n2:2222"), "SHA256:" + "A" * 43, ())
    assert site.beneath({"server": {"user": "joe"}}, found)["server"]["addresses"] == ["n1:2222", "n2:2222"]
    assert "addresses" not in site.beneath({"server": {"address": "mine:1"}}, found)["server"]


def test_resolving_an_ip_address_gives_itself():
    assert transport.resolve("127.0.0.1:2222") == ["127.0.0.1:2222"]
    assert transport.resolve("[::1]:2222") == ["[::1]:2222"]


def test_resolving_localhost_gives_every_address_getaddrinfo_gives():
    """Real getaddrinfo: 'localhost' becomes each of its A/AAAA records (127.0.0.1, and
    ::1 where the hosts file lists it), in the resolver's order, each once."""
    expected = []
    for family, _, _, _, sockaddr in socket.getaddrinfo("localhost", 2222, 0, socket.SOCK_STREAM):
        one = f"[{sockaddr[0]}]:2222" if family == socket.AF_INET6 else f"{sockaddr[0]}:2222"
        expected += [one] if one not in expected else []
    assert transport.resolve("localhost:2222") == expected
    assert "127.0.0.1:2222" in expected


def test_a_name_that_does_not_resolve_gives_nothing():
    assert transport.resolve("no-such-host.invalid:2222") == []
