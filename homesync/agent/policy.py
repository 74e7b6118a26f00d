"""The agent's decision: back up now, or not (and why), and when to look again.

A pure function of the agent's state and the time. The watcher, netwatch, power and the
scheduler feed it; none of them decides. All times are seconds on one clock (time.time()).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

from homesync.durations import duration

# A retry_at of NEVER means no amount of waiting changes the answer: only an event does
# (a network or power change, a file change, the end of a job, a probe result).
NEVER = math.inf


@dataclass(frozen=True)
class DirtyState:
    """What changed in the source tree since the last successful backup started."""

    count: int = 0
    first_change: float | None = None
    last_change: float | None = None
    possibly_dirty: bool = False

    @property
    def dirty(self) -> bool:
        """Return True if anything may need backing up."""
        return self.count > 0 or self.possibly_dirty


@dataclass(frozen=True)
class NetworkView:
    """What the network monitor sees; known=False when there is no monitor (no NetworkManager)."""

    on_corporate: bool = False
    via: str | None = None
    metered: bool = False
    known: bool = True
    since: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class PowerState:
    """Mains or battery, and the charge when known; unknown counts as mains."""

    on_battery: bool = False
    percentage: float | None = None
    known: bool = True


@dataclass(frozen=True)
class History:
    """Outcome of earlier jobs; last_attempt is when the last attempt ended.

    A job stopped because the link went away is an attempt but not a failure.
    """

    last_success: float | None = None
    last_attempt: float | None = None
    consecutive_failures: int = 0
    revoked: str = ""  # the server refused this computer for good (replaced, retired): why


@dataclass(frozen=True)
class ServerView:
    """Whether the backup server answered the last reachability probe, and when."""

    reachable: bool | None = None
    checked_at: float | None = None
    failed_probes: int = 0

    def after_probe(self, ok: bool, now: float) -> ServerView:
        """Given a probe result, return the view that records it."""
        return ServerView(ok, now, 0 if ok else self.failed_probes + 1)


@dataclass(frozen=True)
class Settings:
    """Tunables of the policy, in seconds and percent."""

    debounce: float = 60.0
    settle_limit: float = 600.0
    min_interval: float = 900.0
    max_age: float = 86400.0
    backoff_base: float = 60.0
    backoff_cap: float = 3600.0
    probe_base: float = 0.25
    probe_cap: float = 60.0
    reachable_ttl: float = 30.0
    allow_metered: bool = False
    min_battery_percent: float = 20.0


@dataclass(frozen=True)
class AgentState:
    """Everything decide() looks at, gathered by the scheduler."""

    dirty: DirtyState = field(default_factory=DirtyState)
    network: NetworkView = field(default_factory=NetworkView)
    power: PowerState = field(default_factory=PowerState)
    history: History = field(default_factory=History)
    server: ServerView = field(default_factory=ServerView)
    job_running: bool = False
    settings: Settings = field(default_factory=Settings)
    policy_missing: str = ""  # no fleet policy known yet (none cached, the server not reached): why

    def but(self, **changes) -> AgentState:
        """Return a copy with the given fields replaced."""
        return replace(self, **changes)


class Why(StrEnum):
    """Why the agent does or does not back up now: the code status, the agent's log and
    the server's report show (a str: it is written as its value)."""

    LINK_UP = "link_up"                 # Run: the corporate network came up
    STALE = "stale"                     # Run: no backup, or older than max_age
    CHANGES = "changes"                 # Run: changes settled and the interval passed
    PROBE = "probe"                     # Probe: the server was not reached lately
    JOB_RUNNING = "job_running"
    REVOKED = "revoked"                 # the key was replaced or the machine retired
    NO_POLICY = "no_policy"             # no fleet policy known yet
    UP_TO_DATE = "up_to_date"
    BACKOFF = "backoff"                 # the last attempts failed
    SETTLING = "settling"               # changes still arriving (debounce)
    MIN_INTERVAL = "min_interval"       # backed up recently
    SERVER_UNREACHABLE = "server_unreachable"
    OFF_NETWORK = "off_network"
    METERED = "metered"
    LOW_BATTERY = "low_battery"


@dataclass(frozen=True)
class Run:
    """Start a backup now; code is LINK_UP, STALE or CHANGES."""

    code: Why
    text: str


@dataclass(frozen=True)
class Probe:
    """Everything says run, but the server was not reached lately: probe it, then decide again."""

    text: str
    code: Why = Why.PROBE


@dataclass(frozen=True)
class Skip:
    """Do not back up now; look again at retry_at (NEVER: wait for an event)."""

    code: Why
    text: str
    retry_at: float

    @property
    def waits_for_event(self) -> bool:
        """Return True if only an event, not time, can change this answer."""
        return self.retry_at == NEVER


Decision = Run | Probe | Skip


def decide(state: AgentState, now: float) -> Decision:
    """Given the agent's state and the time, return Run, Probe or Skip with its reason."""
    if state.job_running:
        return Skip(Why.JOB_RUNNING, "a backup is running", NEVER)
    if state.history.revoked:  # permanent: no event or amount of waiting changes it
        return Skip(Why.REVOKED, state.history.revoked, NEVER)
    if state.policy_missing:  # without it, the rules (and "home Wi-Fi is not corporate") are unknown
        return Skip(Why.NO_POLICY, state.policy_missing, NEVER)
    due = _due(state, now)
    if isinstance(due, Skip) and due.code == Why.UP_TO_DATE:
        return due
    blocked = _blocked(state)
    if blocked is not None:
        return blocked
    if isinstance(due, Skip):
        return due
    return _reachability(state, now) or due


def must_stop(state: AgentState) -> Skip | None:
    """Given the state while a job runs, return why it must be stopped, or None."""
    network, settings = state.network, state.settings
    if network.known and not network.on_corporate:
        return _off_network(network)
    if network.metered and not settings.allow_metered:
        return _metered(network)
    return None


def backoff_delay(settings: Settings, failures: int) -> float:
    """Given the number of consecutive failures (>= 1), return the wait before the next try."""
    return min(settings.backoff_cap, settings.backoff_base * 2 ** min(failures - 1, 62))


def probe_delay(settings: Settings, failed_probes: int) -> float:
    """Given the number of failed probes in a row (>= 1), return the wait before the next."""
    return min(settings.probe_cap, settings.probe_base * 2 ** min(failed_probes - 1, 62))


def _due(state: AgentState, now: float) -> Run | Skip:
    """Return Run if a backup is due by changes, age or link-up, else Skip with when it will be."""
    settings, dirty, history = state.settings, state.dirty, state.history
    stale_at = None if history.last_success is None else history.last_success + settings.max_age
    stale = stale_at is None or now >= stale_at
    if not dirty.dirty and not stale:
        return Skip(Why.UP_TO_DATE, "nothing changed since the last backup", stale_at)
    if _fresh_link(state):
        return Run(Why.LINK_UP, f"the corporate network came up via {state.network.via or 'a connection'}")
    failures = history.consecutive_failures
    if failures > 0 and history.last_attempt is not None:
        retry_at = history.last_attempt + backoff_delay(settings, failures)
        if now < retry_at:
            attempts = "attempt" if failures == 1 else f"{failures} attempts"
            return Skip(Why.BACKOFF, f"the last {attempts} failed; retrying {_in(retry_at - now)}", retry_at)
    if stale:
        text = "no backup yet" if stale_at is None else "the last backup is older than the maximum age"
        return Run(Why.STALE, text)
    return _settled(state, now)


def _settled(state: AgentState, now: float) -> Run | Skip:
    """Return Run once dirty changes have settled and the minimum interval has passed."""
    settings, dirty, history = state.settings, state.dirty, state.history
    code, at = Why.SETTLING, -math.inf
    if dirty.last_change is not None:
        at = dirty.last_change + settings.debounce
        if dirty.first_change is not None:
            at = min(at, dirty.first_change + settings.settle_limit)
    if history.consecutive_failures == 0 and history.last_attempt is not None:
        interval_at = history.last_attempt + settings.min_interval
        if interval_at > at:
            code, at = Why.MIN_INTERVAL, interval_at
    if now >= at:
        changes = f"{dirty.count} changes" if dirty.count else "possible changes"
        return Run(Why.CHANGES, f"{changes} to back up")
    if code == Why.SETTLING:
        return Skip(code, f"waiting for changes to settle; backing up {_in(at - now)}", at)
    return Skip(code, f"backed up recently; next backup {_in(at - now)}", at)


def _fresh_link(state: AgentState) -> bool:
    """Return True if the corporate link came up and no attempt has been made since."""
    network, last_attempt = state.network, state.history.last_attempt
    if not (network.known and network.on_corporate and network.since is not None):
        return False
    return last_attempt is None or last_attempt < network.since


def _blocked(state: AgentState) -> Skip | None:
    """Return why the network or power forbids a backup, or None."""
    stop = must_stop(state)
    if stop is not None:
        return stop
    power, settings = state.power, state.settings
    if power.on_battery and power.percentage is not None and power.percentage < settings.min_battery_percent:
        return Skip(Why.LOW_BATTERY,
            f"on battery at {power.percentage:.0f}% (below {settings.min_battery_percent:.0f}%)",
            NEVER,
        )
    return None


def _reachability(state: AgentState, now: float) -> Probe | Skip | None:
    """Return None if the server answered lately, else Probe or Skip until the next probe."""
    server, settings = state.server, state.settings
    if server.checked_at is None or server.reachable is None:
        return Probe("checking that the backup server is reachable")
    if server.reachable:
        if now < server.checked_at + settings.reachable_ttl:
            return None
        return Probe("checking that the backup server is still reachable")
    retry_at = server.checked_at + probe_delay(settings, max(server.failed_probes, 1))
    if now >= retry_at:
        return Probe("checking again whether the backup server is reachable")
    text = "cannot reach the backup server"
    if not state.network.known and state.network.reason:
        text += f" ({state.network.reason})"
    return Skip(Why.SERVER_UNREACHABLE, f"{text}; trying again {_in(retry_at - now)}", retry_at)


def _off_network(network: NetworkView) -> Skip:
    """Return the Skip for being off the corporate network."""
    text = "not on the corporate network"
    if network.reason:
        text += f" ({network.reason})"
    return Skip(Why.OFF_NETWORK, text, NEVER)


def _metered(network: NetworkView) -> Skip:
    """Return the Skip for a metered connection."""
    return Skip(Why.METERED, f"the connection {network.via or ''} is metered".replace("  ", " "), NEVER)


def _in(seconds: float) -> str:
    """Given a delay, return it as short human text ("in 45 s", "in 3 min", "in 2.5 h")."""
    return "in " + duration(seconds)
