"""Properties and examples of the agent's pure backup policy."""

from __future__ import annotations

import math

from hypothesis import given, settings as hsettings, strategies as st

from homesync.agent.policy import (
    NEVER,
    AgentState,
    DirtyState,
    History,
    NetworkView,
    PowerState,
    Probe,
    Run,
    ServerView,
    Settings,
    Skip,
    backoff_delay,
    decide,
    must_stop,
)

T0 = 1_700_000_000.0
offsets = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
times = offsets.map(lambda o: T0 + o)
maybe_times = st.none() | times
durations = st.floats(min_value=0.01, max_value=1e5, allow_nan=False, allow_infinity=False)

settings_st = st.builds(
    Settings,
    debounce=durations,
    settle_limit=durations,
    min_interval=durations,
    max_age=durations,
    backoff_base=durations,
    backoff_cap=durations,
    probe_base=durations,
    probe_cap=durations,
    reachable_ttl=durations,
    allow_metered=st.booleans(),
    min_battery_percent=st.floats(min_value=0, max_value=100),
)
dirty_st = st.builds(
    DirtyState,
    count=st.integers(min_value=0, max_value=10**6),
    first_change=maybe_times,
    last_change=maybe_times,
    possibly_dirty=st.booleans(),
)
network_st = st.builds(
    NetworkView,
    on_corporate=st.booleans(),
    via=st.none() | st.sampled_from(["Corp Dock", "CorpWiFi", "Corp VPN"]),
    metered=st.booleans(),
    known=st.booleans(),
    since=maybe_times,
)
power_st = st.builds(
    PowerState,
    on_battery=st.booleans(),
    percentage=st.none() | st.floats(min_value=0, max_value=100),
    known=st.booleans(),
)
history_st = st.builds(
    History,
    last_success=maybe_times,
    last_attempt=maybe_times,
    consecutive_failures=st.integers(min_value=0, max_value=200),
)
server_st = st.builds(
    ServerView,
    reachable=st.none() | st.booleans(),
    checked_at=maybe_times,
    failed_probes=st.integers(min_value=0, max_value=200),
)
states = st.builds(
    AgentState,
    dirty=dirty_st,
    network=network_st,
    power=power_st,
    history=history_st,
    server=server_st,
    job_running=st.booleans(),
    settings=settings_st,
)


@given(states, times)
def test_never_runs_off_the_corporate_network(state, now):
    state = state.but(network=NetworkView(on_corporate=False, known=True))
    decision = decide(state, now)
    assert isinstance(decision, Skip)
    assert decision.code in ("off_network", "job_running", "up_to_date")


@given(states, times)
def test_never_runs_while_a_job_runs(state, now):
    decision = decide(state.but(job_running=True), now)
    assert decision == Skip("job_running", "a backup is running", NEVER)


@given(states, times)
def test_without_a_monitor_runs_only_when_the_server_answered(state, now):
    state = state.but(network=NetworkView(known=False, reason="NetworkManager not available: x"))
    decision = decide(state, now)
    if isinstance(decision, Run):
        assert state.server.reachable is True


@given(states, times)
def test_metered_blocks_unless_allowed(state, now):
    network = NetworkView(on_corporate=True, via="Phone", metered=True, known=True, since=None)
    state = state.but(network=network, settings=Settings(allow_metered=False))
    decision = decide(state, now)
    assert isinstance(decision, Skip)
    assert decision.code in ("metered", "job_running", "up_to_date")


@given(states, times, st.floats(min_value=0, max_value=19.99))
def test_low_battery_blocks(state, now, percent):
    state = state.but(
        network=NetworkView(on_corporate=True, via="Corp Dock"),
        power=PowerState(on_battery=True, percentage=percent),
        settings=Settings(min_battery_percent=20),
    )
    decision = decide(state, now)
    assert isinstance(decision, Skip)
    assert decision.code in ("low_battery", "job_running", "up_to_date")


@given(states, times)
def test_a_skip_always_says_when_to_look_again_in_the_future(state, now):
    decision = decide(state, now)
    if isinstance(decision, Skip):
        assert decision.retry_at > now
        assert decision.code and decision.text


@given(states, times)
@hsettings(max_examples=300)
def test_eventually_runs_when_dirty_and_conditions_hold(state, now):
    state = state.but(
        job_running=False,
        network=NetworkView(on_corporate=True, via="Corp Dock", metered=state.network.metered,
                            known=True, since=state.network.since),
        power=PowerState(on_battery=False),
        dirty=DirtyState(state.dirty.count + 1, state.dirty.first_change, state.dirty.last_change),
        settings=Settings(**{**state.settings.__dict__, "allow_metered": True}),
    )
    _drive_until_run(state, now)


def _drive_until_run(state: AgentState, now: float, steps: int = 12) -> Run:
    """Sleep until each retry_at, answer probes with success; fail if no Run in `steps`."""
    for _ in range(steps):
        decision = decide(state, now)
        if isinstance(decision, Run):
            return decision
        if isinstance(decision, Probe):
            state = state.but(server=state.server.after_probe(True, now))
            continue
        assert math.isfinite(decision.retry_at), decision
        now = decision.retry_at
    raise AssertionError(f"no Run after {steps} steps: last {decision}")


@given(states, times)
def test_a_failure_never_loses_the_schedule(state, now):
    """While on the network, the server reachable and changes pending, failures only delay."""
    failures = state.history.consecutive_failures + 1
    state = state.but(
        job_running=False,
        network=NetworkView(on_corporate=True, via="Corp Dock", known=True, since=None),
        power=PowerState(),
        dirty=DirtyState(count=1, first_change=now - 1, last_change=now - 1),
        history=History(last_success=now - 10, last_attempt=now, consecutive_failures=failures),
        server=ServerView(True, now),
        settings=Settings(**{**state.settings.__dict__, "reachable_ttl": 1e9}),
    )
    decision = decide(state, now)
    assert isinstance(decision, Skip) and decision.code == "backoff"
    assert decision.retry_at == now + backoff_delay(state.settings, failures)
    assert decide(state, decision.retry_at).code != "backoff"
    _drive_until_run(state, decision.retry_at)


def _on_network(**changes) -> AgentState:
    base = AgentState(
        network=NetworkView(on_corporate=True, via="Corp Dock", known=True, since=T0),
        history=History(last_success=T0 - 100, last_attempt=T0 - 100),
        server=ServerView(True, T0),
    )
    return base.but(**changes)


def test_link_up_runs_at_once_despite_recent_changes():
    state = _on_network(dirty=DirtyState(3, T0 - 1, T0 - 0.5))
    assert decide(state, T0 + 0.1) == Run("link_up", "the corporate network came up via Corp Dock")


def test_link_up_with_nothing_dirty_and_a_fresh_backup_does_nothing():
    decision = decide(_on_network(), T0 + 0.1)
    assert isinstance(decision, Skip) and decision.code == "up_to_date"
    assert decision.retry_at == T0 - 100 + Settings().max_age


def test_link_up_probes_the_server_first_when_unknown():
    state = _on_network(dirty=DirtyState(1, T0, T0), server=ServerView())
    assert isinstance(decide(state, T0), Probe)
    state = state.but(server=state.server.after_probe(False, T0))
    skip = decide(state, T0 + 0.1)
    assert skip.code == "server_unreachable" and skip.retry_at == T0 + Settings().probe_base
    assert isinstance(decide(state, T0 + 0.25), Probe)
    state = state.but(server=state.server.after_probe(True, T0 + 0.25))
    assert decide(state, T0 + 0.3).code == "link_up"


def test_changes_wait_for_debounce_then_min_interval():
    settings = Settings(debounce=60, min_interval=900)
    state = _on_network(
        settings=settings,
        network=NetworkView(on_corporate=True, via="Corp Dock", since=T0 - 1000),
        history=History(last_success=T0 - 100, last_attempt=T0 - 100),
        dirty=DirtyState(5, T0, T0 + 10),
    )
    skip = decide(state, T0 + 20)
    assert (skip.code, skip.retry_at) == ("min_interval", T0 + 800)
    state = state.but(history=History(last_success=T0 - 1000, last_attempt=T0 - 1000),
                      server=ServerView(True, T0 + 70))
    skip = decide(state, T0 + 20)
    assert (skip.code, skip.retry_at) == ("settling", T0 + 70)
    assert decide(state, T0 + 70) == Run("changes", "5 changes to back up")


def test_endless_changes_still_run_after_the_settle_limit():
    settings = Settings(debounce=60, settle_limit=600, min_interval=0)
    state = _on_network(settings=settings, dirty=DirtyState(10**6, T0, T0 + 599),
                        network=NetworkView(on_corporate=True, via="Corp Dock", since=T0 - 1000),
                        server=ServerView(True, T0 + 600))
    assert decide(state, T0 + 600).code == "changes"


def test_stale_backup_runs_without_changes():
    state = _on_network(history=History(last_success=T0 - 90000, last_attempt=T0 - 90000),
                        network=NetworkView(on_corporate=True, via="Corp Dock", since=T0 - 95000))
    assert decide(state, T0).code == "stale"


def test_no_backup_yet_is_stale():
    state = _on_network(history=History())
    assert decide(state, T0).code == "link_up"


def test_off_network_reason_is_reported():
    state = _on_network(network=NetworkView(on_corporate=False, reason="no active connection matches"),
                        dirty=DirtyState(1, T0, T0))
    skip = decide(state, T0)
    assert skip == Skip("off_network", "not on the corporate network (no active connection matches)", NEVER)
    assert skip.waits_for_event


def test_unknown_network_relies_on_the_server_being_reachable():
    network = NetworkView(known=False, reason="NetworkManager not available: no system bus")
    state = _on_network(network=network, dirty=DirtyState(1, T0 - 1000, T0 - 1000),
                        history=History(last_success=T0 - 5000, last_attempt=T0 - 5000),
                        server=ServerView(False, T0, failed_probes=3))
    skip = decide(state, T0 + 0.1)
    assert skip.code == "server_unreachable" and "NetworkManager not available" in skip.text
    assert skip.retry_at == T0 + 1.0
    state = state.but(server=ServerView(True, T0 + 1))
    assert decide(state, T0 + 1).code == "changes"


def test_must_stop_when_the_link_goes_or_turns_metered():
    assert must_stop(_on_network()) is None
    assert must_stop(_on_network(network=NetworkView(on_corporate=False))).code == "off_network"
    metered = NetworkView(on_corporate=True, via="Phone", metered=True)
    assert must_stop(_on_network(network=metered)).code == "metered"
    assert must_stop(_on_network(network=metered, settings=Settings(allow_metered=True))) is None
    assert must_stop(_on_network(network=NetworkView(known=False))) is None


def test_backoff_doubles_and_caps():
    settings = Settings(backoff_base=60, backoff_cap=3600)
    assert [backoff_delay(settings, n) for n in (1, 2, 3, 7, 1000)] == [60, 120, 240, 3600, 3600]
