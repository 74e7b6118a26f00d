"""The LDAP identity backend: people, passwords and admins from a directory server.

This is the one module that talks LDAP (through ldap3); the rest of the server sees Person.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import threading
import time
import unicodedata
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from homesync.errors import AuthenticationError, ConfigError, IdentityUnavailableError, InvalidNameError
from homesync.names import user_name
from homesync_server.identity import IdentityConfig, Person

with warnings.catch_warnings():
    # pyasn1 >= 0.6.1 deprecates names that ldap3 2.9.1 still uses at import time.
    warnings.filterwarnings("ignore", message=r".*(tagMap|typeMap) is deprecated", category=DeprecationWarning)
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

log = logging.getLogger(__name__)

_LOGIN_FAILED = "login failed: wrong user name or password"
# A server that failed is tried after the healthy ones for this long, so that one dead
# replica does not cost every login a full timeout.
_RETRY_DEAD_AFTER = 30.0
_PAGE_SIZE = 500
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Everything ldap3 raises when a server cannot be reached, stops answering or fails TLS.
_UNREACHABLE = (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPStartTLSError, ssl.SSLError, OSError)


class _Entry(NamedTuple):
    dn: str
    attributes: dict


class LdapIdentity:
    """People from an LDAP directory: search as a service account, then bind as the user."""

    def __init__(self, config: IdentityConfig) -> None:
        _check_config(config)
        self.config = config
        self._user_filter = _parenthesised(config.user_filter)
        self._account_filter = _parenthesised(config.account_filter) if config.account_filter else ""
        self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=config.ca_file or None)
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        if config.bind_dn:
            self._service_password()
            _warn_if_readable_by_others(Path(config.bind_password_file))
        _warn_if_cleartext(config)

    def authenticate(self, name: str, password: str) -> Person:
        """Given a user name and password, return the person; raise AuthenticationError
        (one message for every failure) or IdentityUnavailableError."""
        if not password or not _usable_name(name):
            raise AuthenticationError(_LOGIN_FAILED)  # an empty password would bind anonymously
        with self._service_session() as (url, conn):
            entry = self._find_user(conn, name)
            if entry is None:
                log.info("LDAP: no usable entry for user %r (unknown, locked or ambiguous)", name)
                raise AuthenticationError(_LOGIN_FAILED)
            person = self._person(entry, self._admins(conn))
        self._check_password(url, entry.dn, password)
        return person

    def canonical_name(self, name: str) -> str:
        """Return name as the directory's caseIgnoreMatch compares it (RFC 4518): NFKC,
        case folded, outer spaces dropped and inner runs of spaces as one."""
        return canonical_ldap_name(name)

    def lookup(self, name: str) -> Person | None:
        """Given a user name, return the person, or None if the directory no longer lists
        them (or the account filter excludes them)."""
        if not _usable_name(name):
            return None
        with self._service_session() as (_, conn):
            entry = self._find_user(conn, name)
            return self._person(entry, self._admins(conn)) if entry else None

    def people(self) -> list[Person]:
        """Return everyone the user and account filters select, sorted by name."""
        with self._service_session() as (_, conn):
            admins = self._admins(conn)
            entries = self._search(conn, self.config.user_base, self._filter("*"), self._attributes(), paged=True)
        people = (self._person(e, admins) for e in entries if _first(e.attributes, self.config.name_attribute))
        return sorted(people, key=lambda p: p.name)

    def groups(self, name: str) -> list[str]:
        """Return the names (cn) of the groups under group_base that list the user as
        member, uniqueMember or memberUid ([] without a group_base or for an unknown user)."""
        if not self.config.group_base or not _usable_name(name):
            return []
        with self._service_session() as (_, conn):
            entry = self._find_user(conn, name)
            if entry is None:
                return []
            dn, uid = escape_filter_chars(entry.dn), escape_filter_chars(_first(entry.attributes,
                                                                                self.config.name_attribute))
            found = self._search(conn, self.config.group_base,
                                 f"(|(member={dn})(uniqueMember={dn})(memberUid={uid}))", ["cn"], paged=True)
        return sorted({_first(e.attributes, "cn") for e in found} - {""})

    # -- connections ------------------------------------------------------------------

    @contextmanager
    def _service_session(self) -> Iterator[tuple[str, ldap3.Connection]]:
        """Yield (url, connection) bound as the service account on the first server that
        answers; map a failure during the session to IdentityUnavailableError."""
        url, conn = self._connect_service()
        try:
            yield url, conn
        except _UNREACHABLE as e:
            self._mark_failed(url)
            raise IdentityUnavailableError(f"directory unavailable: {url}: {_reason(e)}") from None
        finally:
            _close(conn)

    def _connect_service(self) -> tuple[str, ldap3.Connection]:
        """Return (url, connection) bound as the service account, trying each URL in order;
        raise IdentityUnavailableError naming every failure when none answers."""
        password = self._service_password()
        problems = []
        for url in self._ordered_urls():
            conn = None
            try:
                conn = self._open(url, self.config.bind_dn, password)
                bound = conn.bind(read_server_info=False)
            except _UNREACHABLE as e:
                _close(conn)
                self._mark_failed(url)
                problems.append(f"{url}: {_reason(e, password)}")
                continue
            if bound:
                self._mark_alive(url)
                return url, conn
            refusal = (conn.result or {}).get("description")
            _close(conn)
            raise IdentityUnavailableError(
                f"directory unavailable: {url} refused the service account's bind ({refusal})",
                "check bind_dn and bind_password_file in [identity]")
        raise IdentityUnavailableError("directory unavailable: " + "; ".join(problems))

    def _open(self, url: str, dn: str, password: str) -> ldap3.Connection:
        """Return an open connection to url that will bind as dn (anonymously when dn is
        empty), with TLS already started when configured; nothing is sent in clear first."""
        server = ldap3.Server(url, tls=self._tls, connect_timeout=self.config.timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server, user=dn or None, password=password if dn else None,
            authentication=ldap3.SIMPLE if dn else ldap3.ANONYMOUS,
            receive_timeout=_receive_timeout(self.config.timeout), raise_exceptions=False,
            auto_referrals=False, read_only=True, return_empty_attributes=False)
        conn.open(read_server_info=False)
        if self.config.starttls and not server.ssl and not conn.start_tls(read_server_info=False):
            _close(conn)
            raise ldap_errors.LDAPStartTLSError("StartTLS was not accepted")
        return conn

    def _check_password(self, url: str, dn: str, password: str) -> None:
        """Bind as dn with the user's password on url; raise AuthenticationError if refused."""
        conn = None
        try:
            conn = self._open(url, dn, password)
            if conn.bind(read_server_info=False):
                return
            log.info("LDAP bind as %s refused: %s", dn, (conn.result or {}).get("description"))
        except _UNREACHABLE as e:
            self._mark_failed(url)
            raise IdentityUnavailableError(f"directory unavailable: {url}: {_reason(e, password)}") from None
        finally:
            _close(conn)
        raise AuthenticationError(_LOGIN_FAILED)

    def _ordered_urls(self) -> list[str]:
        """Return the configured URLs, those that failed recently moved to the end."""
        now = time.monotonic()
        with self._lock:
            recent = {u for u, t in self._failed_at.items() if now - t < _RETRY_DEAD_AFTER}
        return sorted(self.config.urls, key=lambda u: u in recent)

    def _mark_failed(self, url: str) -> None:
        with self._lock:
            self._failed_at[url] = time.monotonic()

    def _mark_alive(self, url: str) -> None:
        with self._lock:
            self._failed_at.pop(url, None)

    def _service_password(self) -> str:
        """Return the service account's password from bind_password_file; raise ConfigError."""
        if not self.config.bind_dn:
            return ""
        return read_password_file(self.config.bind_password_file)

    # -- searches ---------------------------------------------------------------------

    def _find_user(self, conn: ldap3.Connection, name: str) -> _Entry | None:
        """Return the one entry the filters select for name, or None (none or several)."""
        found = self._search(conn, self.config.user_base, self._filter(escape_filter_chars(name)),
                             self._attributes(), size_limit=2)
        if len(found) > 1:
            log.warning("LDAP: more than one entry matches user %r; refusing it", name)
            return None
        if found and not _first(found[0].attributes, self.config.name_attribute):
            log.warning("LDAP: %s has no %s; refusing it", found[0].dn, self.config.name_attribute)
            return None
        return found[0] if found else None

    def _admins(self, conn: ldap3.Connection) -> tuple[set[tuple], set[str]]:
        """Return the admin group's member DNs (as comparison keys) and memberUid names."""
        if not self.config.admin_group:
            return set(), set()
        found = self._search(conn, self.config.admin_group, "(objectClass=*)",
                             ["member", "uniqueMember", "memberUid"], scope=ldap3.BASE, missing_ok=True)
        if not found:
            log.warning("LDAP: admin group %s not found; nobody is an admin", self.config.admin_group)
            return set(), set()
        attrs = found[0].attributes
        dns = _values(attrs, "member") + [_strip_uid(v) for v in _values(attrs, "uniqueMember")]
        return {k for k in map(dn_key, dns) if k}, set(_values(attrs, "memberUid"))

    def _search(self, conn: ldap3.Connection, base: str, search_filter: str, attributes: list[str],
                scope: str = ldap3.SUBTREE, size_limit: int = 0, paged: bool = False,
                missing_ok: bool = False) -> list[_Entry]:
        """Return the entries under base matching search_filter (every page when paged);
        raise IdentityUnavailableError if the search fails or base is missing (unless missing_ok)."""
        entries: list[_Entry] = []
        cookie = None
        while True:
            try:
                conn.search(base, search_filter, scope, attributes=attributes, size_limit=size_limit,
                            time_limit=math.ceil(self.config.timeout),
                            paged_size=_PAGE_SIZE if paged else None, paged_cookie=cookie)
            except (ldap_errors.LDAPInvalidFilterError, ldap_errors.LDAPInvalidDnError) as e:
                raise ConfigError(f"[identity] invalid search {base!r} {search_filter!r}: {e}") from None
            entries += [_Entry(r["dn"], r["attributes"]) for r in conn.response or []
                        if r.get("type") == "searchResEntry"]
            cookie = _next_page(conn, base, missing_ok)
            if not cookie:
                return entries

    def _filter(self, value: str) -> str:
        """Return the user search filter with {username} replaced by value (already escaped)."""
        user = self._user_filter.replace("{username}", value)
        return f"(&{user}{self._account_filter})" if self._account_filter else user

    def _attributes(self) -> list[str]:
        c = self.config
        return [c.name_attribute, c.display_name_attribute, c.mail_attribute]

    def _person(self, entry: _Entry, admins: tuple[set[tuple], set[str]]) -> Person:
        """Given a user entry and the admin group's members, return the Person."""
        c, attrs = self.config, entry.attributes
        name = _first(attrs, c.name_attribute)
        admin = dn_key(entry.dn) in admins[0] or name in admins[1]
        return Person(name, admin, _first(attrs, c.display_name_attribute), _first(attrs, c.mail_attribute))


def read_password_file(path: str) -> str:
    """Given the bind password file's path, return the password (first line); raise
    ConfigError naming the file if it is missing, unreadable or empty."""
    hint = "write the service account's password into it, mode 0600, owned by the server user"
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the LDAP bind password file {path}: "
                          f"{getattr(e, 'strerror', None) or type(e).__name__}", hint) from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise ConfigError(f"the LDAP bind password file {path} is empty", hint)
    return password


def canonical_ldap_name(name: str) -> str:
    """Given a user name, return the form equal for every spelling an LDAP server's
    case-ignoring match takes for the same value ("JOE", " joe" and "jOe " are "joe")."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def dn_key(dn: str) -> tuple:
    """Given a DN, return a key equal for DNs an LDAP server treats as the same (attribute
    names and values compared case-insensitively, escapes decoded); () if it is no DN."""
    try:
        return tuple((t.strip().lower(), _unescape_dn_value(v).strip().casefold())
                     for t, v, _ in parse_dn(dn, strip=True))
    except (ldap_errors.LDAPInvalidDnError, ValueError, IndexError):
        return ()


def _unescape_dn_value(value: str) -> str:
    """Given an RDN value as written in a DN, return it with \\XX and \\c escapes decoded."""
    raw = re.sub(rb"\\([0-9a-fA-F]{2}|.)",
                 lambda m: bytes.fromhex(m[1].decode()) if len(m[1]) == 2 else m[1], value.encode())
    return raw.decode("utf-8", "replace")


def _strip_uid(value: str) -> str:
    """Given a uniqueMember value, return its DN without the optional #'0101'B uid."""
    return re.sub(r"#'[01]*'B$", "", value)


def _next_page(conn: ldap3.Connection, base: str, missing_ok: bool) -> bytes | None:
    """Check the result of conn's last search; return the paging cookie if there is more.
    A missing user_base must not look like "everyone left", hence the error."""
    result = conn.result or {}
    code = result.get("result", 0)
    if code == _NO_SUCH_OBJECT and missing_ok:
        return None
    if code not in (0, _SIZE_LIMIT_EXCEEDED):
        detail = f"{result.get('description')} {result.get('message') or ''}".strip()
        raise IdentityUnavailableError(f"directory unavailable: search under {base} failed: {detail}")
    paging = (result.get("controls") or {}).get(_PAGED_RESULTS) or {}
    return (paging.get("value") or {}).get("cookie") or None


def _reason(error: BaseException, *secrets: str) -> str:
    """Return a one-line reason for error, with the given passwords masked."""
    text = " ".join(str(error).split()) or type(error).__name__
    # ldap3 wraps messages in exception args more than once: "('socket ssl…',)".
    while (wrapped := re.fullmatch(r"""\(['"](.*)['"],\)""", text)):
        text = wrapped[1]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _values(attrs: dict, name: str) -> list[str]:
    value = attrs.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _first(attrs: dict, name: str) -> str:
    values = _values(attrs, name)
    return values[0] if values else ""


def _usable_name(name: object) -> bool:
    """Return whether name can be a user name at all (text, not empty, no control chars)."""
    try:
        user_name(name)  # type: ignore[arg-type]
    except InvalidNameError:
        return False
    return True


def _parenthesised(ldap_filter: str) -> str:
    ldap_filter = ldap_filter.strip()
    return ldap_filter if ldap_filter.startswith("(") else f"({ldap_filter})"


def _receive_timeout(timeout: float) -> int:
    # ldap3 also packs this into SO_RCVTIMEO as whole seconds and fails on a float.
    return max(1, math.ceil(timeout))


def _close(conn: ldap3.Connection | None) -> None:
    """Unbind and close conn, ignoring errors: the server may already be gone."""
    if conn is None:
        return
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - closing must never mask the real outcome
        log.debug("LDAP unbind failed", exc_info=True)


def _warn_if_readable_by_others(path: Path) -> None:
    """Log a warning if the bind password file is readable by group or others."""
    if path.stat().st_mode & 0o077:
        log.warning("LDAP bind password file %s is readable by others; chmod 0600 it", path)


def _warn_if_cleartext(config: IdentityConfig) -> None:
    """Log a warning for each URL that would carry passwords unencrypted off this host."""
    for url in config.urls:
        host = re.sub(r"^ldap://(\[[^]]*\]|[^:/]*).*$", r"\1", url, flags=re.IGNORECASE).strip("[]")
        if url.lower().startswith("ldap://") and not config.starttls and host not in _LOOPBACK:
            log.warning("LDAP: %s without starttls sends passwords in clear", url)


def _check_config(config: IdentityConfig) -> None:
    """Raise one ConfigError listing every problem in an [identity] section for LDAP."""
    problems = [p for p in (
        not config.urls and "urls is empty",
        not config.user_base and "user_base is empty",
        "{username}" not in config.user_filter and "user_filter lacks {username}",
        config.timeout <= 0 and "timeout must be positive",
        config.bind_dn and not config.bind_password_file and "bind_dn is set but bind_password_file is empty",
        config.ca_file and not Path(config.ca_file).is_file() and f"ca_file {config.ca_file} not found",
    ) if p]
    problems += [p for p in map(_url_problem, config.urls) if p]
    if problems:
        raise ConfigError("[identity] " + "; ".join(problems), "see the LDAP section of the admin guide")


def _url_problem(url: str) -> str:
    """Return what is wrong with an LDAP URL, or "" if ldap3 accepts it."""
    if not re.match(r"ldaps?://", url, re.IGNORECASE):
        return f"{url!r} is not an ldap:// or ldaps:// URL"
    try:
        ldap3.Server(url, get_info=ldap3.NONE)
    except ldap_errors.LDAPException as e:
        return f"{url!r}: {e}"
    return ""
