"""The endpoint's limits as pure objects: session slots per login and in all, and the
waiting room of connections not logged in yet (deadline, bounds, the oldest making room);
restore grants as index rows."""

from __future__ import annotations

import pytest

from homesync.errors import ServerBusyError
from homesync_server.config import Limits
from homesync_server.sessions import SessionSlots, WaitingRoom
from homesync_server.index_store import open_url


def test_slots_cap_one_login_and_the_server():
    slots = SessionSlots(Limits(max_sessions=3, max_sessions_per_login=2))
    slots.take("machine:a")
    slots.take("machine:a")
    with pytest.raises(ServerBusyError, match="too many sessions for this login"):
        slots.take("machine:a")
    slots.take("user:joe")
    with pytest.raises(ServerBusyError, match="on this server"):
        slots.take("user:ann")
    slots.give_back("machine:a")
    slots.take("user:ann")


def test_the_waiting_room_closes_the_late_and_the_oldest_when_full():
    now = [0.0]
    room = WaitingRoom(Limits(preauth_seconds=5, max_unauthenticated=3, max_unauthenticated_per_address=2),
                       clock=lambda: now[0])
    assert room.enter("a1", "10.0.0.1") == [] and room.enter("a2", "10.0.0.1") == []
    assert room.enter("a3", "10.0.0.1") == ["a1"], "the oldest from that address makes room"
    assert room.enter("b1", "10.0.0.2") == []
    assert room.enter("c1", "10.0.0.3") == ["a2"], "the oldest of all makes room"
    room.leave("b1")
    now[0] = 5.0
    assert sorted(room.overdue()) == ["a3", "c1"] and room.overdue() == []


def test_grants_are_rows_that_end(tmp_path):
    index = open_url(f'sqlite://{tmp_path / "i.sqlite"}')
    grant = {"public_key": "ssh-ed25519 K", "repository_id": "0123456789abcdef", "user": "joe", "template": 0,
             "granted": 1000.0, "expires": 2000.0, "idle": 100.0}
    index.add_grant(grant)
    assert index.live_grant("ssh-ed25519 K", "0123456789abcdef", 1050.0)["user"] == "joe"
    assert index.live_grant("ssh-ed25519 K", "0123456789abcdef", 1150.0) is None, "idle too long"
    index.touch_grant("ssh-ed25519 K", 1140.0)
    assert index.live_grant("ssh-ed25519 K", "0123456789abcdef", 1150.0) is not None
    assert index.live_grant("ssh-ed25519 K", "fedcba9876543210", 1150.0) is None
    assert index.revoke_grants("0123456789abcdef", "ann") == 0
    assert index.revoke_grants("0123456789abcdef") == 1
    assert index.grant("ssh-ed25519 K", "0123456789abcdef") is None
    index.close()
