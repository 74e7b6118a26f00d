"""Matching NetworkManager's active connections against the [network] rules (pure)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homesync.agent.netwatch import ActiveConnection, NetworkRules, matches

RULES = NetworkRules(corporate_domains=("corp.example.com",), corporate_ssids=("CorpWiFi", "Café Corp"),
                     corporate_connections=("Corp VPN", "0b0e7c5a-1111-4222-8333-444455556666"))
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


def test_domain_from_ip4_domains_and_searches_and_dhcp():
    for connection in (
        ActiveConnection("a", domains=("corp.example.com",)),
        ActiveConnection("b", searches=("CORP.Example.COM.",)),
        ActiveConnection("c", domains=("~corp.example.com",)),
        ActiveConnection("d", dhcp_domain_name="corp.example.com"),
        ActiveConnection("e", dhcp_domain_search="example.org corp.example.com"),
    ):
        assert matches(RULES, [connection]) == (True, connection.id)


@given(st.lists(label, min_size=1, max_size=4))
def test_subdomains_match(labels):
    host = ".".join(labels) + ".corp.example.com"
    assert matches(RULES, [ActiveConnection("x", domains=(host.upper(),))]) == (True, "x")


@given(label)
def test_a_domain_merely_ending_in_the_same_letters_does_not_match(prefix):
    for near_miss in (f"{prefix}corp.example.com", f"corp.example.com.{prefix}", "example.com"):
        assert matches(RULES, [ActiveConnection("x", domains=(near_miss,))]) == (False, None)


def test_ssid_is_compared_as_utf8_bytes():
    assert matches(RULES, [ActiveConnection("w", type="802-11-wireless", ssid=b"CorpWiFi")]) == (True, "w")
    assert matches(RULES, [ActiveConnection("w", ssid="Café Corp".encode())]) == (True, "w")
    assert matches(RULES, [ActiveConnection("w", ssid="Café Corp".encode("latin-1"))]) == (False, None)
    assert matches(RULES, [ActiveConnection("w", ssid=b"corpwifi")]) == (False, None)
    assert matches(RULES, [ActiveConnection("w", ssid=b"\xff\xfe")]) == (False, None)


def test_connection_id_or_uuid():
    assert matches(RULES, [ActiveConnection("Corp VPN", vpn=True)]) == (True, "Corp VPN")
    dock = ActiveConnection("Wired 1", uuid="0B0E7C5A-1111-4222-8333-444455556666")
    assert matches(RULES, [dock]) == (True, "Wired 1")


def test_any_active_connection_not_only_the_first():
    wifi = ActiveConnection("Home", type="802-11-wireless", ssid=b"HomeNet", default=True)
    dock = ActiveConnection("Dock", dhcp_domain_name="corp.example.com")
    assert matches(RULES, [wifi, dock]) == (True, "Dock")


def test_only_activated_connections_count():
    activating = ActiveConnection("Corp VPN", state=1)
    assert matches(RULES, [activating]) == (False, None)
    assert matches(RULES, [ActiveConnection("Corp VPN", state=4)]) == (False, None)


def test_no_rules_match_nothing():
    assert matches(NetworkRules(), [ActiveConnection("x", domains=("corp.example.com",))]) == (False, None)



def test_the_configs_network_settings_work_as_rules():
    from homesync.config import NetworkSettings

    settings = NetworkSettings(corporate_domains=("corp.example.com",), corporate_ssids=("CorpWiFi",))
    assert matches(settings, [ActiveConnection("w", ssid=b"CorpWiFi")]) == (True, "w")
