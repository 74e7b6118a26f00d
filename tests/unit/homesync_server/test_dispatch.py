"""What a session may run: the server's own actions, never the client's argv."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from homesync.errors import IdentityUnavailableError, PermissionDeniedError, TooManyLoginsError
from homesync_server.dispatch import (MACHINE, REFUSED, RESTORE, TEMPLATE, USER, BorgServe, Principal, Rpc,
                                     TemplateServe, decide)

machine = Principal(MACHINE, "joe", machine_id="0123456789abcdef")
restore = Principal(RESTORE, "joe", machine_id="0123456789abcdef")
user = Principal(USER, "joe")
template = Principal(TEMPLATE, "joe", template_id="fedcba9876543210")


def test_borg_serve_is_confined_to_the_sessions_machine_whatever_was_asked():
    for command in ("borg serve", "borg serve --restrict-to-path /", "/usr/bin/borg serve --umask=077 --info",
                    "borg serve --restrict-to-repository /srv/other"):
        assert decide(machine, command) == BorgServe("0123456789abcdef", may_write=True)
        assert decide(restore, command) == BorgServe("0123456789abcdef")


def test_a_template_restore_key_reaches_only_its_templates_repository():
    for command in ("borg serve", "borg serve --restrict-to-repository /srv/repos/0123456789abcdef"):
        assert decide(template, command) == TemplateServe("fedcba9876543210")
    assert decide(template, "homesync-rpc") == Rpc()
    # a template key never names a machine's repository, even with a machine id at hand
    confused = Principal(TEMPLATE, "joe", machine_id="0123456789abcdef")
    with pytest.raises(PermissionDeniedError):
        decide(confused, "borg serve")
    assert template.describe() == "joe@template:fedcba9876543210"


def test_a_password_login_gets_rpc_only():
    assert decide(user, "homesync-rpc") == Rpc()
    with pytest.raises(PermissionDeniedError):
        decide(user, "borg serve")


@given(st.text(max_size=60))
def test_anything_else_is_refused(command):
    words = command.split()
    if words == ["homesync-rpc"] or (len(words) >= 2 and words[0].rsplit("/", 1)[-1] == "borg"
                                     and words[1] == "serve"):
        return
    for principal in (machine, restore, user, template):
        with pytest.raises(PermissionDeniedError):
            decide(principal, command)


def test_a_session_refused_by_the_directory_can_do_nothing_and_says_why():
    refused = Principal(REFUSED, "joe", error=IdentityUnavailableError("directory unavailable"))
    for command in ("homesync-rpc", "borg serve"):
        with pytest.raises(IdentityUnavailableError):
            decide(refused, command)


def test_a_throttled_session_can_do_nothing_and_says_why_and_one_without_a_reason_too():
    throttled = Principal(REFUSED, "joe", error=TooManyLoginsError("too many failed logins for this account"))
    for command in ("homesync-rpc", "borg serve", "borg serve --restrict-to-repository /"):
        with pytest.raises(TooManyLoginsError):
            decide(throttled, command)
        with pytest.raises(PermissionDeniedError):
            decide(Principal(REFUSED, "joe"), command)
