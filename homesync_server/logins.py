"""Throttling of password logins per account and per source address: pure rules over
the records the index keeps. An attempt is counted when it starts, before its password
is checked, so that parallel attempts cannot overtake the count.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

from homesync.errors import TooManyLoginsError


@dataclass(frozen=True)
class Limit:
    """How many attempts a key may have checked before it is blocked, and for how long."""

    kind: str  # "account" or "address"
    attempts: int
    base_block: float = 60.0
    max_block: float = 3600.0

    def block(self, blocks_before: int) -> float:
        """Return the length of the next block: it doubles with each block, up to max_block."""
        return min(self.max_block, self.base_block * 2 ** min(blocks_before, 32))


ACCOUNT = Limit("account", attempts=5)
# Much higher than an account's: an office behind one NAT address shares it.
ADDRESS = Limit("address", attempts=50)
LIMITS = {limit.kind: limit for limit in (ACCOUNT, ADDRESS)}
# A record is forgotten (its count starts again) this long after its last attempt,
# refusal or block, whichever is latest.
QUIET = 600.0
REASON_WRONG = "wrong user name or password"
REASON_LIMITED = "rate limited"


@dataclass
class Record:
    """One key's state: counted attempts (in flight or failed), blocks, and the refusals
    of the current burst (audited once when it starts and once, summed, when it ends)."""

    key: str  # "account:<canonical name>" or "address:<ip>"
    attempts: int = 0
    blocks: int = 0
    blocked_until: float = 0.0
    last_attempt: float = 0.0
    refused: int = 0
    refused_first: float = 0.0
    refused_last: float = 0.0
    actor: str = ""  # who the newest refusal was for, and from where
    source: str = ""

    @property
    def limit(self) -> Limit:
        return LIMITS[self.key.split(":", 1)[0]]

    @property
    def name(self) -> str:
        return self.key.split(":", 1)[1]

    def forget_at(self) -> float:
        return max(self.last_attempt, self.blocked_until, self.refused_last) + QUIET

    def empty(self) -> bool:
        return not (self.attempts or self.blocks or self.refused)

    def clear(self) -> None:
        """Forget everything but the key."""
        self.__dict__.update(Record(self.key).__dict__)


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt's password may be checked; if not, which limit refused it until when."""

    allowed: bool
    kind: str = ""
    until: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list, compare=False)

    def error(self, now: float) -> TooManyLoginsError:
        minutes = max(1, math.ceil((self.until - now) / 60))
        whose = "for this account" if self.kind == "account" else "from your address"
        return TooManyLoginsError(f"too many failed logins {whose}; try again in {minutes} "
                                  f"minute{'s' if minutes != 1 else ''}")


def keys(name: str, source: str) -> tuple[str, str]:
    """Given a canonical user name and a source address, return their records' keys."""
    return "account:" + name, "address:" + address_key(source)


def address_key(source: str) -> str:
    """Given a source address, return what its limit counts: the address itself (an
    IPv4-mapped one as IPv4), or an IPv6 address's /64, which one host usually owns whole."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return source
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def reserve(account: Record, address: Record, now: float, actor: str, source: str) -> Verdict:
    """Count one attempt for account from address (records changed in place) and return
    whether its password may be checked, with the audit events now due."""
    events = forget_if_quiet(account, now) + forget_if_quiet(address, now)
    for record in (account, address):
        until = _blocked_until(record, now)
        if until:
            events += _refuse(record, now, actor, source)
            return Verdict(False, record.limit.kind, until, events)
    for record in (account, address):
        events += end_burst(record, now)
        _take(record, now)
    return Verdict(True, events=events)


def succeeded(account: Record, address: Record, now: float) -> list[dict[str, Any]]:
    """A checked password was right: clear the account, take back the address's count."""
    events = end_burst(account, now)
    account.clear()
    address.attempts = max(0, address.attempts - 1)
    return events


def released(account: Record, address: Record) -> None:
    """An attempt's password could not be checked (directory down, server busy): uncount it."""
    for record in (account, address):
        record.attempts = max(0, record.attempts - 1)


def unblock(record: Record, now: float) -> list[dict[str, Any]]:
    """Forget a record (an admin lifted the block); return the summary of its refusals."""
    events = end_burst(record, now)
    record.clear()
    return events


def forget_if_quiet(record: Record, now: float) -> list[dict[str, Any]]:
    """Forget a record that has been quiet for QUIET seconds; return its summary, if due."""
    if record.empty() or now < record.forget_at():
        return []
    return unblock(record, now)


def end_burst(record: Record, now: float) -> list[dict[str, Any]]:
    """Close a burst of refusals: one event summing them (none if there was only the first)."""
    count, first, last = record.refused, record.refused_first, record.refused_last
    record.refused, record.refused_first, record.refused_last = 0, 0.0, 0.0
    if count < 2:
        return []
    return [_event(now, record.actor, record.source, reason=REASON_LIMITED, limit=record.limit.kind,
                   refused=count, first=first, last=last)]


def _blocked_until(record: Record, now: float) -> float:
    """Return when the record's block ends (0.0: not blocked); start the first block
    once the free attempts are used up."""
    if record.blocked_until > now:
        return record.blocked_until
    if record.attempts >= record.limit.attempts and not record.blocks:
        record.blocked_until, record.blocks = now + record.limit.block(0), 1
        return record.blocked_until
    return 0.0


def _take(record: Record, now: float) -> None:
    """Count an attempt; one after a served block starts the next, longer block at once,
    so that a block earns exactly one more checked attempt."""
    if record.attempts >= record.limit.attempts:
        record.blocked_until = now + record.limit.block(record.blocks)
        record.blocks += 1
    record.attempts += 1
    record.last_attempt = now


def _refuse(record: Record, now: float, actor: str, source: str) -> list[dict[str, Any]]:
    """Count a refusal; return the event that starts its burst, if it is the first."""
    first = record.refused == 0
    record.refused += 1
    record.refused_last, record.actor, record.source = now, actor, source
    if not first:
        return []
    record.refused_first = now
    return [_event(now, actor, source, reason=REASON_LIMITED, limit=record.limit.kind,
                   blocked_until=record.blocked_until)]


def _event(now: float, actor: str, source: str, **detail: Any) -> dict[str, Any]:
    return {"at": now, "action": "login_failed", "actor": actor, "machine_id": None, "source": source,
            "detail": detail}
