"""Directory integration end to end: the real server authenticating against a real
slapd. joe enrolls and restores with his directory password; failures look alike;
the directory being down gives a clear error while key-authenticated backups go on."""

from __future__ import annotations

import os
import time

import pytest

from tests.support.homesync_server import start_server
from tests.support.password_logins import ACCOUNT_ATTEMPTS, BLOCKED, guess
from tests.support.processes import UNPRIVILEGED, chown_tree, private_dir, remove
from tests.support.slapd import ACCOUNT_FILTER, ADMIN_GROUP_DN, PEOPLE_DN, running_slapd


def _identity(slapd, password_file, urls=None) -> str:
    urls = urls or [slapd.url]
    quoted = ", ".join(f'"{u}"' for u in urls)
    return f'''[identity]
backend = "ldap"
urls = [{quoted}]
bind_dn = "{slapd.service_dn}"
bind_password_file = "{password_file}"
user_base = "{PEOPLE_DN}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
account_filter = "{ACCOUNT_FILTER}"
admin_group = "{ADMIN_GROUP_DN}"
timeout = 2.0
'''


def _server_with_directory(slapd, tmp_path_factory):
    secret_dir = private_dir("hs-ldap-secret-")
    password_file = slapd.write_password_file(secret_dir / "ldap-password")
    os.chown(password_file, UNPRIVILEGED, UNPRIVILEGED)
    return start_server(users={}, identity=_identity(slapd, password_file))


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    with running_slapd(tmp_path_factory.mktemp("slapd")) as slapd:
        server = _server_with_directory(slapd, tmp_path_factory)
        yield slapd, server
        server.stop()
        remove(server.data.parent)


def _enroll(computer, server, user, password, machine):
    return computer.run("enroll", "--server", server.address, "--user", user, "--machine", machine,
                        "--fingerprint", server.fingerprint, "--password-stdin", input=password + "\n")


def test_joe_enrolls_backs_up_and_restores_with_his_directory_password(directory, computer_factory):
    slapd, server = directory
    laptop, replacement = computer_factory(), computer_factory()
    (laptop.home / "thesis.tex").write_text("\\documentclass{article}")
    chown_tree(laptop.home)
    assert _enroll(laptop, server, "joe", "joe-secret", "Joe's Thinkpad").returncode == 0
    laptop.ok("backup")
    restored = replacement.json("restore", "--machine", "Joe's Thinkpad", "--server", server.address,
                                "--user", "joe", "--fingerprint", server.fingerprint, "--password-stdin",
                                input="joe-secret\n")
    assert restored["restored"] >= 1
    assert (replacement.home / "thesis.tex").read_text() == "\\documentclass{article}"
    users = {u["name"]: u for u in server.cli_json("user", "list")}
    assert users["joe"]["machines"] == ["Joe's Thinkpad"] and users["joe"]["display_name"] == "Joe Bloggs"
    assert users["ann"]["admin"] is True and users["joe"]["admin"] is False


def test_users_who_leave_the_directory_are_flagged_and_their_backups_kept(directory, computer_factory):
    slapd, server = directory
    dn = slapd.add_user("temp", "temp-secret", "Temporary Person")
    computer = computer_factory()
    (computer.home / "f").write_text("kept")
    chown_tree(computer.home)
    assert _enroll(computer, server, "temp", "temp-secret", "Temp PC").returncode == 0
    computer.ok("backup")
    slapd.delete(dn)
    machines = [m for m in server.cli_json("machines") if m["owner"] == "temp"]
    assert machines and machines[0]["owner_gone"] is True and machines[0]["archives"] == 1
    assert {u["name"]: u["gone"] for u in server.cli_json("user", "list")}["temp"] is True


@pytest.mark.parametrize("user, password", [("joe", "wrong"), ("nobody-at-all", "joe-secret"),
                                            ("lou", "lou-secret"), ("j*", "joe-secret"),
                                            ("joe)(uid=*", "joe-secret"), ("*", "x")])
def test_failures_look_alike(directory, computer_factory, user, password):
    _, server = directory
    computer = computer_factory()
    done = _enroll(computer, server, user, password, "X")
    assert done.returncode == 12
    assert done.stderr.strip() == "homesync: error: login failed: wrong user name or password"
    assert not (computer.home / ".config").exists()


def test_failed_logins_are_rate_limited_per_account_whatever_the_case_or_spaces(directory, computer_factory):
    """Runs after the failures above (one of them joe's). The directory matches names
    case-insensitively and ignores outer spaces, so JOE, " joe" and "jOe " are joe: they
    share his count, even from other addresses, and then the right password is refused
    with its own message, without asking the directory."""
    slapd, server = directory
    bound = f"BIND dn=\"uid=joe,{PEOPLE_DN}\""
    bound_before = slapd.log_text().count(bound)
    assert bound_before > 0, "joe logged in earlier in this module"
    variants = ["JOE", " joe", "jOe ", "Joe", "joe ", "  JOE  ", "jOE"]
    for n, variant in enumerate(variants * 3):
        guess(server, variant, f"guess-{n}", source=f"127.0.0.{10 + n}")
    time.sleep(0.5)  # slapd writes its log asynchronously
    assert slapd.log_text().count(bound) - bound_before <= ACCOUNT_ATTEMPTS - 1
    done = _enroll(computer_factory(), server, "joe", "joe-secret", "Rate Limited")
    assert done.returncode == 17, done.stderr
    assert BLOCKED.match(done.stderr.strip()), done.stderr
    assert slapd.log_text().count(bound) - bound_before <= ACCOUNT_ATTEMPTS - 1
    reasons = server.index_rows("SELECT actor, detail FROM audit WHERE action = 'login_failed'")
    assert any(actor == "joe" and "rate limited" in detail for actor, detail in reasons)
    assert len(reasons) >= 6


def test_directory_down_gives_a_clear_error_while_backups_go_on(tmp_path_factory, computer_factory):
    with running_slapd(tmp_path_factory.mktemp("slapd-down")) as slapd:
        server = _server_with_directory(slapd, tmp_path_factory)
        try:
            laptop = computer_factory()
            (laptop.home / "notes.txt").write_text("v1")
            chown_tree(laptop.home)
            assert _enroll(laptop, server, "joe", "joe-secret", "Down Test").returncode == 0
            slapd_process_stop(slapd)

            started = time.monotonic()
            done = laptop.run("machines", "--password-stdin", input="joe-secret\n")
            assert done.returncode == 16, done.stderr
            assert "directory unavailable" in done.stderr and done.stderr.count("\n") == 1
            assert time.monotonic() - started < 15
            assert slapd.service_password not in done.stderr

            (laptop.home / "notes.txt").write_text("v2")
            assert laptop.json("backup")["result"] == "success"
        finally:
            server.stop()
            remove(server.data.parent)


def slapd_process_stop(slapd) -> None:
    import signal
    os.kill(slapd.pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(slapd.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
