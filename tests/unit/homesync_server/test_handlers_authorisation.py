"""Who may run which RPC operation (issue 12, item 7): every operation of the protocol
against every kind of principal — the machine's owner (and an admin, who is a user
too), another user, the machine's own key, a restore grant for it, a template grant,
and a refused login — on a real index, without subprocesses. An operation a principal
may not run fails with PermissionDeniedError, or with the NotFoundError that does not
tell "not yours" from "none"; one it may run gets past authorisation (its result, or
an error about its arguments or the data)."""

from __future__ import annotations

import pytest

from homesync import protocol
from homesync.errors import NotFoundError, PermissionDeniedError
from homesync_server import dispatch, handlers
from homesync_server.actions import setup
from homesync_server.config import Layout
from homesync_server.dispatch import MACHINE, REFUSED, RESTORE, TEMPLATE, USER, Principal
from homesync_server.index import event
from homesync_server.services import Services

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7qrrWKGWBOq0JgVqZyYVbDjmc0C8ZmHtH3FtkAhYyt"
NEW_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb3Kw1pXj3z6v4Cw4nq3yJ2Yl0rA2QvE8u7xZq9y6d5"
MACHINE_ID, TEMPLATE_ID = "0123456789abcdef", "fedcba9876543210"

PRINCIPALS = {
    "owner": Principal(USER, "joe"),
    "admin": Principal(USER, "root", admin=True),
    "other user": Principal(USER, "ann"),
    "machine": Principal(MACHINE, "joe", machine_id=MACHINE_ID),
    "restore": Principal(RESTORE, "joe", machine_id=MACHINE_ID),
    "template": Principal(TEMPLATE, "joe", template_id=TEMPLATE_ID),
}

REPORT = {"archive": "a", "hostname": "h", "files": 1, "bytes": 1, "seconds": 1.0, "result": "success"}
# every operation with arguments the schema accepts; an allowed one stops short of borg
# (a too-short passphrase, a repository that is not there)
REQUESTS = {
    "whoami": {},
    "machine.enroll": {"name": "New laptop", "hostname": "h", "public_key": KEY, "passphrase": b"short"},
    "machines.list": {},
    "archives.list": {"machine_id": MACHINE_ID},
    "backup.report": {"name": "2026-12-01T10:00:00", "start": 1.7e9, "end": 1.7e9 + 1, "files": 1,
                      "original_size": 1, "compressed_size": 1, "deduplicated_size": 1, "result": "success"},
    "agent.report": {"state": "idle"},
    "policy.get": {"applied": 0},
    "restore.grant": {"machine_id": MACHINE_ID, "public_key": NEW_KEY},
    "machine.adopt": {"machine_id": MACHINE_ID, "public_key": NEW_KEY, "hostname": "new"},
    "restore.report": {"machine_id": MACHINE_ID, **REPORT},
    "restore.end": {"machine_id": MACHINE_ID, "public_key": NEW_KEY},
    "catalog.put": {"offset": 0, "data": b"sealed", "final": True},
    "catalog.get": {"machine_id": MACHINE_ID, "offset": 0},
    "template.grant": {"name": "Lab", "public_key": NEW_KEY},
    "template.report": {"template_id": TEMPLATE_ID, **REPORT},
    "templates.list": {},
}

# who may run what: the rest must be refused
ALLOWED = {
    "whoami": set(PRINCIPALS),
    "machine.enroll": {"owner", "admin", "other user"},
    "machines.list": {"owner", "admin", "other user", "machine"},
    "archives.list": {"owner", "machine", "restore"},
    "backup.report": {"machine"},
    "agent.report": {"machine"},
    "policy.get": {"machine"},
    "restore.grant": {"owner"},
    "machine.adopt": {"owner"},
    "restore.report": {"owner", "machine", "restore"},
    "restore.end": {"owner"},
    "catalog.put": {"machine"},
    "catalog.get": {"owner", "machine"},
    "template.grant": {"owner", "admin", "other user"},
    "template.report": {"owner", "admin", "other user"},
    "templates.list": {"owner", "admin", "other user"},
}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    layout = Layout(tmp_path_factory.mktemp("server") / "data")
    setup.init(layout, "127.0.0.1:0")
    with Services.open(layout) as opened:
        for user in ("joe", "ann"):
            opened.index.record_user(user)
        opened.index.add_machine({"id": MACHINE_ID, "owner": "joe", "name": "Joe's Thinkpad", "hostname": "t",
                                  "public_key": KEY, "enrolled": 1.0}, "joe's thinkpad", event("enroll", "joe"))
        yield opened


def _refused(error: BaseException | None) -> bool:
    return isinstance(error, PermissionDeniedError) or (
        isinstance(error, NotFoundError) and "among yours" in error.message)


def test_every_operation_is_in_the_matrix():
    assert set(REQUESTS) == set(ALLOWED) == set(protocol.SCHEMA) == set(handlers.HANDLERS)


@pytest.mark.parametrize("op", sorted(REQUESTS))
@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_each_principal_runs_only_what_it_may(services, op, who):
    checked_op, args = protocol.check_request(protocol.request(op, REQUESTS[op]))
    try:
        handlers.handle(services, PRINCIPALS[who], checked_op, args, "127.0.0.1")
        error = None
    except Exception as e:  # past authorisation, an allowed call may still fail on the data
        error = e
    if who in ALLOWED[op]:
        assert not _refused(error), f"{who} may run {op}, but was refused: {error}"
    else:
        assert _refused(error), f"{who} may not run {op}, but got {error!r}"


def test_a_refused_login_runs_no_operation_at_all():
    refused = Principal(REFUSED, "joe", machine_id=MACHINE_ID, error=PermissionDeniedError("logins blocked"))
    for command in (protocol.RPC_COMMAND, "borg serve --restrict-to-repository /"):
        with pytest.raises(PermissionDeniedError, match="logins blocked"):
            dispatch.decide(refused, command)
