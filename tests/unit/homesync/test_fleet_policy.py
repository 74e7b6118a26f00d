"""Fleet policy layers: site < group < user < machine, with the source of every value, and
a computer's own config.toml laid over them only where users may override."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homesync import fleet_policy as fp

KEYS = ["agent.debounce", "agent.max_age", "network.corporate_domains", "backup.exclude"]
GROUPS = ["eng", "lab", "staff"]
layer = st.dictionaries(st.sampled_from(KEYS), st.integers(0, 1000), max_size=4)


@given(site=layer, groups=st.dictionaries(st.sampled_from(GROUPS), layer), user=layer, machine=layer,
       member_of=st.lists(st.sampled_from(GROUPS), unique=True))
def test_the_most_specific_layer_wins(site, groups, user, machine, member_of):
    layers = fp.Layers(site, groups, {"joe": user}, {"m1": machine})
    values, sources = fp.effective(layers, member_of, "joe", "m1")
    for key in KEYS:
        ordered = [("site", site)] + [(f"group {g}", groups[g]) for g in sorted(member_of) if g in groups] + \
                  [("user joe", user), ("machine m1", machine)]
        expected = [(name, part[key]) for name, part in ordered if key in part]
        if expected:
            assert (sources[key], values[key]) == expected[-1]
        else:
            assert key not in values and key not in sources


@given(site=layer, other=layer)
def test_other_peoples_layers_do_not_apply(site, other):
    layers = fp.Layers(site, {"eng": other}, {"ann": other}, {"m2": other})
    assert fp.effective(layers, ["lab"], "joe", "m1") == (site, {k: "site" for k in site})


def test_a_layer_is_replaced_and_an_empty_one_removed():
    layers = fp.Layers().with_layer("group", "eng", {"agent.debounce": 5})
    assert layers.groups == {"eng": {"agent.debounce": 5}}
    assert layers.with_layer("group", "eng", {}).groups == {}
    assert fp.Layers.from_json(layers.as_json()) == layers


def test_local_values_win_only_where_users_may_override():
    policy = {"agent.debounce": "5s", "agent.max_age": "6h", "policy.user_may_override": ["agent.debounce"]}
    sources = {"agent.debounce": "site", "agent.max_age": "group eng", "policy.user_may_override": "site"}
    local = {"server": {"address": "a:1"}, "agent": {"debounce": "1s", "max_age": "1h", "min_interval": "1m"}}
    merged, origin = fp.over_local(policy, sources, local)
    assert merged["agent"] == {"debounce": "1s", "max_age": "6h"}
    assert origin["agent.debounce"] == fp.LOCAL
    assert origin["agent.max_age"] == "group eng (local value ignored)"
    assert origin["agent.min_interval"] == fp.IGNORED
    assert fp.settings_sources(origin)["agent.retry_min"] == fp.DEFAULT


def test_without_a_restriction_every_local_setting_wins_and_addresses_come_from_the_policy():
    policy = {"agent.debounce": "5s", "server.addresses": ["b:2", "c:3"]}
    merged, origin = fp.over_local(policy, {"agent.debounce": "site", "server.addresses": "site"},
                                   {"server": {"address": "a:1"}, "agent": {"debounce": "1s"}})
    assert merged["agent"]["debounce"] == "1s" and merged["server"]["address"] == "b:2"
    assert origin["server.addresses"] == "site"


def test_the_identity_in_config_toml_is_kept():
    local = {"server": {"address": "a:1", "fingerprint": "SHA256:x", "user": "joe"}, "machine": {"id": "m"}}
    merged, origin = fp.over_local({}, {}, local)
    assert merged == local and origin == {}
