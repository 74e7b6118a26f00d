"""The LDAP identity backend against a real slapd started from a temp directory:
search-then-bind logins, locked accounts, admin groups, failover, a directory that is
down or silent, and user names full of LDAP filter characters.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from homesync.errors import AuthenticationError, ConfigError, IdentityUnavailableError
from homesync_server.identity import IdentityConfig, Person, open_backend
from homesync_server.identity.ldap import LdapIdentity, dn_key
from tests.support.slapd import (  # noqa: F401 - fixtures
    ACCOUNT_FILTER, ACCOUNTS, ADMIN_GROUP_DN, PEOPLE_DN, POSIX_ADMIN_GROUP_DN, SERVICE_DN, Slapd, client_env,
    free_port, identity_config, ldap_identity_config, slapd, slapd_tls, write_certificates,
)

# ldap3 checks certificate names with ssl.match_hostname, deprecated since Python 3.7.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning")

LOGIN_FAILED = "login failed: wrong user name or password"
JOE = ACCOUNTS["joe"]
NASTY_NAMES = [
    "*", "j*", "jo*", "*oe", "j*e", "joe*", "joe)", "(joe", "joe)(uid=*", "*)(uid=*))(|(uid=*",
    "joe)(|(uid=*)", "joe\\", "\\", "j\\2a", "jo\\65", "\\6aoe", "joe\x00", "\x00", "joe\x00*",
    "(uid=joe)", "joe)(objectClass=*", "*)(&", "ann*", "uid=joe", "joe,ou=people",
]


def ldap(config: IdentityConfig, **overrides) -> LdapIdentity:
    return LdapIdentity(dataclasses.replace(config, **overrides))


def login_failure(backend: LdapIdentity, name: str, password: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        backend.authenticate(name, password)
    return caught.value.line()


def wait_for_log(server: Slapd, pattern: str, timeout: float = 3.0) -> str:
    """Return slapd's log once pattern appears in it (slapd writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = server.log_text()
        if re.search(pattern, text):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{pattern!r} never appeared in slapd's log")


def eventually(probe, done, timeout: float = 3.0):
    """Return probe()'s value once done(value) holds, or its last value after timeout."""
    deadline = time.monotonic() + timeout
    while not done(value := probe()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


@pytest.fixture
def offline_config(tmp_path: Path) -> IdentityConfig:
    """An [identity] configuration whose directory is not running (for config and down tests)."""
    password_file = tmp_path / "offline-password"
    password_file.write_text("offline-service-pw\n")
    return IdentityConfig(
        backend="ldap", urls=(f"ldap://127.0.0.1:{free_port()}",), bind_dn=SERVICE_DN,
        bind_password_file=str(password_file), user_base=PEOPLE_DN, admin_group=ADMIN_GROUP_DN,
        account_filter=ACCOUNT_FILTER, timeout=1.0)


@contextmanager
def blackhole() -> Iterator[int]:
    """Yield a loopback port that accepts TCP connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


# -- logins ---------------------------------------------------------------------------


def test_joe_authenticates_with_display_name_and_mail(ldap_identity_config: IdentityConfig) -> None:
    person = LdapIdentity(ldap_identity_config).authenticate("joe", "joe-secret")
    assert person == Person("joe", admin=False, display_name="Joe Bloggs", mail="joe@example.org")


def test_open_backend_chooses_ldap(ldap_identity_config: IdentityConfig, tmp_path: Path) -> None:
    backend = open_backend(ldap_identity_config, tmp_path)
    assert isinstance(backend, LdapIdentity)
    assert backend.authenticate("joe", "joe-secret").name == "joe"


def test_the_name_comes_from_the_directory(ldap_identity_config: IdentityConfig) -> None:
    # uid matches case-insensitively; the Person carries the directory's spelling, so
    # "JOE" and "joe" own the same machines.
    assert LdapIdentity(ldap_identity_config).authenticate("JOE", "joe-secret").name == "joe"


def test_wrong_password_and_unknown_user_fail_alike(ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    wrong_password = login_failure(backend, "joe", "not-joe-secret")
    unknown_user = login_failure(backend, "nobody", "joe-secret")
    assert wrong_password == unknown_user == LOGIN_FAILED


def test_empty_password_is_refused_before_any_bind(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    before = slapd.log_text().count(" ACCEPT ")
    assert login_failure(backend, "joe", "") == LOGIN_FAILED
    time.sleep(0.3)
    assert slapd.log_text().count(" ACCEPT ") == before, "an empty password reached the directory"
    # The log does show connections and binds when there are some: a wrong password
    # produces a bind as joe's DN.
    login_failure(backend, "joe", "wrong")
    wait_for_log(slapd, rf'BIND dn="{re.escape(JOE.dn)}" method=128')


def test_anonymous_bind_is_what_an_empty_password_would_have_been(slapd: Slapd) -> None:
    # Why the refusal matters: this slapd accepts an anonymous bind (RFC 4513 allows it),
    # so passing an empty password through would have "succeeded" for anyone.
    who = subprocess.run(["ldapwhoami", "-x", "-H", slapd.url], capture_output=True, text=True, timeout=10,
                         env=client_env())
    assert who.returncode == 0 and who.stdout.strip() == "anonymous"


def test_locked_account_fails(ldap_identity_config: IdentityConfig) -> None:
    assert login_failure(LdapIdentity(ldap_identity_config), "lou", "lou-secret") == LOGIN_FAILED
    # The account filter is what refuses lou: without it the password is right.
    assert ldap(ldap_identity_config, account_filter="").authenticate("lou", "lou-secret").name == "lou"


def test_more_than_one_entry_fails(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    backend = ldap(ldap_identity_config, user_filter="(|(uid={username})(uid=ann))")
    assert login_failure(backend, "joe", "joe-secret") == LOGIN_FAILED


def test_an_entry_without_a_name_attribute_fails(ldap_identity_config: IdentityConfig) -> None:
    backend = ldap(ldap_identity_config, name_attribute="employeeNumber")
    assert login_failure(backend, "joe", JOE.password) == LOGIN_FAILED
    assert backend.lookup("joe") is None and backend.people() == []


def test_mail_as_login_name(ldap_identity_config: IdentityConfig) -> None:
    backend = ldap(ldap_identity_config, user_filter="(mail={username})")
    assert backend.authenticate("joe@example.org", JOE.password).name == "joe"


def test_every_connection_is_unbound(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    start = len(slapd.log_text())
    backend.authenticate("joe", JOE.password)
    login_failure(backend, "joe", "wrong")
    login_failure(backend, "nobody", "x")
    backend.lookup("ann")
    backend.people()

    def opened_and_unbound() -> tuple[set[str], set[str]]:
        opened = set(re.findall(r"conn=(\d+) fd=\d+ ACCEPT", slapd.log_text()[start:]))
        return opened, set(re.findall(r"conn=(\d+) op=\d+ UNBIND", slapd.log_text()))

    # slapd's threads write the log a little later, in any order.
    opened, unbound = eventually(opened_and_unbound, lambda o_u: len(o_u[0]) == 7 and o_u[0] <= o_u[1])
    assert len(opened) == 7 and opened <= unbound


def test_concurrent_logins_share_one_backend(ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    logins = [("joe", JOE.password), ("ann", "ann-secret"), ("bob", "bob-secret")] * 10
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(lambda login: backend.authenticate(*login).name, logins))
    assert names == [name for name, _ in logins]


# -- admins, lookups, people ----------------------------------------------------------


def test_admin_from_group_of_names(ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    assert backend.authenticate("ann", "ann-secret").admin is True
    assert backend.authenticate("joe", "joe-secret").admin is False


def test_admin_from_posix_group_member_uid(ldap_identity_config: IdentityConfig) -> None:
    backend = ldap(ldap_identity_config, admin_group=POSIX_ADMIN_GROUP_DN)
    assert backend.authenticate("bob", "bob-secret").admin is True
    assert backend.authenticate("ann", "ann-secret").admin is False


def test_missing_admin_group_means_no_admins(ldap_identity_config: IdentityConfig) -> None:
    backend = ldap(ldap_identity_config, admin_group="cn=nope,ou=groups,dc=example,dc=org")
    assert backend.authenticate("ann", "ann-secret").admin is False


def test_lookup_of_a_removed_user_returns_none(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    dn = slapd.add_user("leaver", "leaver-secret", "Lee Leaver")
    assert backend.lookup("leaver") == Person("leaver", False, "Lee Leaver", "leaver@example.org")
    slapd.delete(dn)
    assert backend.lookup("leaver") is None
    assert login_failure(backend, "leaver", "leaver-secret") == LOGIN_FAILED


def test_lookup_of_locked_and_unknown_users(ldap_identity_config: IdentityConfig) -> None:
    backend = LdapIdentity(ldap_identity_config)
    assert backend.lookup("ann") == Person("ann", True, "Ann Admin", "ann@example.org")
    assert backend.lookup("lou") is None
    assert backend.lookup("nobody") is None
    assert backend.lookup("*") is None


def test_people_lists_users_the_filters_select(ldap_identity_config: IdentityConfig) -> None:
    people = LdapIdentity(ldap_identity_config).people()
    assert [p.name for p in people] == ["ann", "bob", "joe"]
    assert [p.admin for p in people] == [True, False, False]
    assert people[2].display_name == "Joe Bloggs" and people[2].mail == "joe@example.org"


def test_people_pages_through_a_larger_directory(
        slapd: Slapd, ldap_identity_config: IdentityConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("homesync_server.identity.ldap._PAGE_SIZE", 7)
    dns = [slapd.add_user(f"many{i:04d}", "x-secret") for i in range(30)]
    try:
        pages_before = slapd.log_text().count(" nentries=7 ")
        names = [p.name for p in LdapIdentity(ldap_identity_config).people()]
        assert names == sorted(["ann", "bob", "joe"] + [f"many{i:04d}" for i in range(30)])
        time.sleep(0.1)
        assert slapd.log_text().count(" nentries=7 ") - pages_before >= 4
    finally:
        for dn in dns:
            slapd.delete(dn)


def test_missing_user_base_is_an_error_not_everyone_gone(ldap_identity_config: IdentityConfig) -> None:
    # An empty answer would flag every machine as belonging to someone who left.
    backend = ldap(ldap_identity_config, user_base="ou=nope,dc=example,dc=org")
    with pytest.raises(IdentityUnavailableError, match="noSuchObject"):
        backend.people()
    with pytest.raises(IdentityUnavailableError):
        backend.lookup("joe")


# -- a directory that is down, silent, or one of several ------------------------------


@pytest.mark.parametrize("call", ["authenticate", "lookup", "people"])
def test_nothing_listening_is_unavailable_within_the_timeout(offline_config: IdentityConfig, call: str) -> None:
    backend = ldap(offline_config, urls=(f"ldap://127.0.0.1:{free_port()}",), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(IdentityUnavailableError, match="^directory unavailable: ldap://127.0.0.1:"):
        _call(backend, call)
    assert time.monotonic() - started < 1.0 + 2


@pytest.mark.parametrize("scheme,starttls", [("ldap", False), ("ldap", True), ("ldaps", False)])
@pytest.mark.parametrize("call", ["authenticate", "lookup", "people"])
def test_a_silent_server_is_unavailable_within_the_timeout(
        offline_config: IdentityConfig, call: str, scheme: str, starttls: bool) -> None:
    with blackhole() as port:
        backend = ldap(offline_config, urls=(f"{scheme}://127.0.0.1:{port}",), starttls=starttls, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(IdentityUnavailableError, match="^directory unavailable:"):
            _call(backend, call)
        assert time.monotonic() - started < 1.0 + 2


def test_failover_to_the_second_url(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    backend = ldap(ldap_identity_config, urls=(dead, slapd.url))
    assert backend.authenticate("joe", "joe-secret").name == "joe"
    assert [p.name for p in backend.people()] == ["ann", "bob", "joe"]


def test_a_silent_first_server_costs_the_timeout_once(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    with blackhole() as port:
        backend = ldap(ldap_identity_config, urls=(f"ldap://127.0.0.1:{port}", slapd.url), timeout=1.0)
        started = time.monotonic()
        assert backend.authenticate("joe", "joe-secret").name == "joe"
        first = time.monotonic() - started
        started = time.monotonic()
        assert backend.authenticate("ann", "ann-secret").admin
        again = time.monotonic() - started
    assert 0.9 < first < 1.0 + 2
    assert again < 0.9, "the silent server should have been tried last"


def test_all_servers_down_names_each(offline_config: IdentityConfig) -> None:
    urls = (f"ldap://127.0.0.1:{free_port()}", f"ldap://127.0.0.1:{free_port()}")
    with pytest.raises(IdentityUnavailableError) as caught:
        ldap(offline_config, urls=urls, timeout=1.0).authenticate("joe", "joe-secret")
    assert all(url in caught.value.message for url in urls)


def test_wrong_service_password_is_unavailable_with_a_hint(
        slapd: Slapd, ldap_identity_config: IdentityConfig, tmp_path: Path) -> None:
    wrong = slapd.write_password_file(tmp_path / "wrong", "not-the-service-password")
    backend = ldap(ldap_identity_config, bind_password_file=str(wrong))
    with pytest.raises(IdentityUnavailableError, match="invalidCredentials") as caught:
        backend.authenticate("joe", "joe-secret")
    assert "bind_password_file" in caught.value.hint
    assert "not-the-service-password" not in caught.value.line()


def test_starttls_refused_by_a_server_without_tls(ldap_identity_config: IdentityConfig) -> None:
    # This slapd has no certificate: StartTLS must fail, and nothing is sent in clear.
    with pytest.raises(IdentityUnavailableError, match="directory unavailable"):
        ldap(ldap_identity_config, starttls=True).authenticate("joe", "joe-secret")


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture
def tls_config(slapd_tls: Slapd, tmp_path: Path) -> IdentityConfig:
    return identity_config(slapd_tls, tmp_path / "ldap-password", ca_file=str(slapd_tls.ca_file))


def test_starttls_with_the_ca_encrypts_every_bind(slapd_tls: Slapd, tls_config: IdentityConfig) -> None:
    backend = ldap(tls_config, urls=(slapd_tls.tls_url,), starttls=True)
    assert backend.authenticate("joe", JOE.password).name == "joe"
    log = wait_for_log(slapd_tls, rf'BIND dn="{re.escape(JOE.dn)}" mech=SIMPLE')
    binds = re.findall(r'BIND dn="[^"]*" mech=SIMPLE bind_ssf=\d+ ssf=(\d+)', log)
    assert binds and all(int(ssf) > 0 for ssf in binds), "a bind went out in clear"


def test_ldaps_with_the_ca(slapd_tls: Slapd, tls_config: IdentityConfig) -> None:
    person = ldap(tls_config, urls=(slapd_tls.ldaps_url,)).authenticate("ann", "ann-secret")
    assert person.admin and person.mail == "ann@example.org"


@pytest.mark.parametrize("how", ["starttls", "ldaps"])
def test_a_certificate_from_another_ca_is_refused(
        slapd_tls: Slapd, tls_config: IdentityConfig, tmp_path: Path, how: str) -> None:
    write_certificates(tmp_path)  # a different CA
    url, starttls = (slapd_tls.tls_url, True) if how == "starttls" else (slapd_tls.ldaps_url, False)
    backend = ldap(tls_config, urls=(url,), starttls=starttls, ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(IdentityUnavailableError, match="certificate verify failed"):
        backend.authenticate("joe", JOE.password)


def test_without_ca_file_the_system_store_does_not_know_a_private_ca(
        slapd_tls: Slapd, tls_config: IdentityConfig) -> None:
    with pytest.raises(IdentityUnavailableError, match="certificate verify failed"):
        ldap(tls_config, urls=(slapd_tls.ldaps_url,), ca_file="").authenticate("joe", JOE.password)


# -- names full of filter characters --------------------------------------------------


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_filter_characters_fail_safely(slapd: Slapd, ldap_identity_config: IdentityConfig, name: str) -> None:
    backend = LdapIdentity(ldap_identity_config)
    binds_as_joe = slapd.log_text().count(f'BIND dn="{JOE.dn}"')
    assert login_failure(backend, name, JOE.password) == LOGIN_FAILED
    assert backend.lookup(name) is None
    time.sleep(0.05)
    assert slapd.log_text().count(f'BIND dn="{JOE.dn}"') == binds_as_joe, f"{name!r} found joe's entry"


NAME_CHARS = st.sampled_from(list("joeJOEan*()\\\x00 ,=|&!~<>") + ["é", "\u202e"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(NAME_CHARS, min_size=0, max_size=12))
def test_generated_names_never_log_in_as_someone_else(ldap_identity_config: IdentityConfig, name: str) -> None:
    backend = LdapIdentity(ldap_identity_config)
    try:
        person = backend.authenticate(name, JOE.password)
    except AuthenticationError as e:
        assert e.line() == LOGIN_FAILED
        return
    # The only names LDAP may treat as "joe": case and outer spaces are insignificant.
    assert name.strip(" ").lower() == "joe" and person.name == "joe"


# -- secrets never leak ---------------------------------------------------------------


def test_bind_password_never_appears_in_messages(
        slapd: Slapd, ldap_identity_config: IdentityConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen = [slapd.service_password, "wrong-service-pw", JOE.password, "joe-wrong-pw"]
    wrong_file = slapd.write_password_file(tmp_path / "wrong", "wrong-service-pw")
    errors: list[Exception] = []
    with blackhole() as silent:
        cases = [
            (dict(), "joe", "joe-wrong-pw"),
            (dict(), "nobody", JOE.password),
            (dict(urls=(f"ldap://127.0.0.1:{free_port()}",)), "joe", JOE.password),
            (dict(urls=(f"ldap://127.0.0.1:{silent}",)), "joe", JOE.password),
            (dict(urls=(f"ldap://127.0.0.1:{silent}",), starttls=True), "joe", JOE.password),
            (dict(bind_password_file=str(wrong_file)), "joe", JOE.password),
        ]
        for overrides, name, password in cases:
            with pytest.raises((AuthenticationError, IdentityUnavailableError)) as caught:
                ldap(ldap_identity_config, timeout=1.0, **overrides).authenticate(name, password)
            errors.append(caught.value)
    texts = [f"{e.line()} {e!r} {e.hint}" for e in errors] + [r.getMessage() for r in caplog.records]
    for secret in secrets_seen:
        assert not [t for t in texts if secret in t], f"a password leaked: {secret}"


# -- configuration --------------------------------------------------------------------


def test_missing_password_file_is_a_config_error_naming_it(offline_config: IdentityConfig, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        ldap(offline_config, bind_password_file=str(missing))


def test_unusable_password_files_are_config_errors(offline_config: IdentityConfig, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (empty, tmp_path):
        with pytest.raises(ConfigError, match=re.escape(str(path))):
            ldap(offline_config, bind_password_file=str(path))


def test_password_file_may_end_in_crlf(
        slapd: Slapd, ldap_identity_config: IdentityConfig, tmp_path: Path) -> None:
    path = tmp_path / "crlf"
    path.write_text(slapd.service_password + "\r\n")
    assert ldap(ldap_identity_config, bind_password_file=str(path)).lookup("joe") is not None


def test_config_problems_are_reported_together(offline_config: IdentityConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        ldap(offline_config, urls=("http://x", "ldap://127.0.0.1:notaport"), user_base="",
             user_filter="(uid=joe)", ca_file="/no/such/ca.pem", timeout=0)
    message = caught.value.message
    for expected in ("http://x", "notaport", "user_base", "{username}", "ca_file", "timeout"):
        assert expected in message


def test_anonymous_searches_when_no_bind_dn(slapd: Slapd, ldap_identity_config: IdentityConfig) -> None:
    # No service account: no password file is needed and the searches are anonymous.
    # This slapd hides everything from anonymous readers, so the base itself seems
    # missing, which is an error rather than "nobody is here".
    backend = ldap(ldap_identity_config, bind_dn="", bind_password_file="")
    with pytest.raises(IdentityUnavailableError, match="noSuchObject"):
        backend.authenticate("joe", JOE.password)


@pytest.mark.parametrize("a,b,same", [
    ("uid=joe,ou=people,dc=example,dc=org", "UID=Joe, OU=People, DC=example, DC=org", True),
    ("cn=Bloggs\\, Joe,dc=org", "cn=bloggs\\2c joe,dc=org", True),
    ("uid=joe,dc=org", "uid=jo,dc=org", False),
    ("uid=joe,dc=org", "uid=joe,dc=com", False),
])
def test_dn_comparison(a: str, b: str, same: bool) -> None:
    assert (dn_key(a) == dn_key(b)) is same


def _call(backend: LdapIdentity, call: str) -> object:
    if call == "authenticate":
        return backend.authenticate("joe", JOE.password)
    if call == "lookup":
        return backend.lookup("joe")
    return backend.people()
