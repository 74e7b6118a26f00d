"""`homesync-server login list|unblock`: the accounts and addresses whose password
logins are counted or blocked (kept in the index, shared with the running server),
and lifting a block, audited as `login_unblock`.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from homesync import names
from homesync.errors import NotFoundError, UsageError
from homesync_server import logins
from homesync_server.config import Layout
from homesync_server.index import admin_actor, event
from homesync_server.services import Services


def listed(layout: Layout) -> list[dict[str, Any]]:
    """Return every account and address with counted attempts, blocked ones first."""
    with Services.open(layout) as services:
        now = time.time()
        return [_row(r, now) for r in services.index.login_records() if now < r.forget_at()]


def unblock(layout: Layout, name: str | None, address: str | None) -> dict[str, Any]:
    """Forget the count and block of one account (the name as its users type it) or one
    source address; return what was lifted. Raise NotFoundError if it had none."""
    with Services.open(layout) as services:
        if name is not None:
            key = logins.keys(services.identity.canonical_name(names.user_name(name)), "")[0]
        else:
            key = logins.keys("", _address(address))[1]
        actor = admin_actor()
        lifted = services.index.throttle((key,), lambda records, now: _lift(records[0], now, actor))
        if lifted is None:
            raise NotFoundError(f"no failed logins are counted for {key.replace(':', ' ', 1)}",
                                "see `homesync-server login list`")
        return lifted


def _address(text: str) -> str:
    """Return an IP address as given; raise UsageError if it is none."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise UsageError(f"{text!r} is not an IP address", "e.g. --address 192.0.2.10") from None


def _lift(record: logins.Record, now: float, actor: str) -> tuple[dict[str, Any] | None, list[dict]]:
    if record.empty():
        return None, []
    lifted = _row(record, now)
    events = logins.unblock(record, now)
    kind, value = record.key.split(":", 1)
    return lifted, events + [dict(event("login_unblock", actor, **{kind: value}), at=now)]


def _row(record: logins.Record, now: float) -> dict[str, Any]:
    kind, value = record.key.split(":", 1)
    return {"key": kind, "name": value, "attempts": record.attempts, "blocked": record.blocked_until > now,
            "blocked_until": record.blocked_until if record.blocked_until > now else None,
            "blocks": record.blocks, "refused": record.refused}
