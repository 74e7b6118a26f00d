"""A throwaway OpenLDAP slapd for tests: configured and seeded in a temp directory, run
in the foreground on a free loopback port, killed at teardown. It never reads or
writes the system's LDAP configuration (every tool gets -f).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from homesync_server.identity import IdentityConfig

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
LDAPMODIFY = "ldapmodify"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"
SERVICE_DN = f"cn=homesync,{BASE_DN}"
ADMIN_GROUP_DN = f"cn=homesync-admins,{GROUPS_DN}"          # groupOfNames: ann
POSIX_ADMIN_GROUP_DN = f"cn=homesync-admins-posix,{GROUPS_DN}"  # posixGroup: memberUid bob
# Locked accounts carry shadowExpire: 1 (expired one day after the epoch; nis schema):
# standard schemas only, no ppolicy overlay needed, and the account filter is what
# refuses them (slapd itself would still accept their bind).
LOCK_ATTRIBUTE = "shadowExpire"
ACCOUNT_FILTER = f"(!({LOCK_ATTRIBUTE}=*))"


@dataclass(frozen=True)
class Account:
    uid: str
    password: str
    cn: str
    mail: str
    locked: bool = False

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_DN}"


ACCOUNTS = {
    a.uid: a for a in (
        Account("joe", "joe-secret", "Joe Bloggs", "joe@example.org"),
        Account("ann", "ann-secret", "Ann Admin", "ann@example.org"),
        Account("bob", "bob-secret", "Bob Posix", "bob@example.org"),
        Account("lou", "lou-secret", "Lou Locked", "lou@example.org", locked=True),
    )
}


@dataclass
class Slapd:
    """A running throwaway slapd and what a test needs to talk to it."""

    directory: Path
    port: int
    pid: int
    service_password: str
    root_password: str
    tls_port: int = 0  # ldaps:// port when started with tls=True
    base_dn: str = BASE_DN
    service_dn: str = SERVICE_DN
    accounts: dict[str, Account] = field(default_factory=lambda: dict(ACCOUNTS))

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """The ldap:// URL by the name in the certificate (for StartTLS)."""
        return f"ldap://localhost:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server's certificate (PEM), when started with tls=True."""
        return self.directory / "ca.pem"

    @property
    def log_file(self) -> Path:
        return self.directory / "slapd.log"

    def log_text(self) -> str:
        """Return what slapd has logged so far (-d 256: connections and operations)."""
        return self.log_file.read_text(errors="replace")

    def write_password_file(self, path: Path, password: str | None = None) -> Path:
        """Write the service account's password (or another) to path, mode 0600; return path."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write((self.service_password if password is None else password) + "\n")
        return path

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change set as the directory's root, with the OpenLDAP CLI."""
        secret = self.directory / "root-password"
        secret.touch(mode=0o600)
        secret.write_text(self.root_password)  # -y reads it verbatim: no newline
        done = subprocess.run([LDAPMODIFY, "-x", "-H", self.url, "-D", ROOT_DN, "-y", str(secret)],
                              input=ldif, text=True, capture_output=True, timeout=10, env=client_env())
        if done.returncode:
            raise RuntimeError(f"ldapmodify failed ({done.returncode}): {done.stderr.strip()}")

    def add_user(self, uid: str, password: str, cn: str = "") -> str:
        """Add a person to ou=people; return its DN."""
        account = Account(uid, password, cn or uid, f"{uid}@example.org")
        self.modify(_person_ldif(account, changetype=True))
        return account.dn

    def delete(self, dn: str) -> None:
        """Remove an entry."""
        self.modify(f"dn: {dn}\nchangetype: delete\n")


def client_env() -> dict[str, str]:
    """Return an environment for the OpenLDAP CLI tools that ignores ldap.conf and ~/.ldaprc."""
    return {**os.environ, "LDAPNOINIT": "1"}


def ssha(password: str) -> str:
    """Given a password, return a salted {SSHA} userPassword value, as slappasswd makes."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _person_ldif(a: Account, changetype: bool = False) -> str:
    lines = [f"dn: {a.dn}"] + (["changetype: add"] if changetype else []) + [
        "objectClass: inetOrgPerson", "objectClass: posixAccount", "objectClass: shadowAccount",
        f"uid: {a.uid}", f"cn: {a.cn}", f"sn: {a.cn.split()[-1]}", f"mail: {a.mail}",
        f"uidNumber: {10000 + sum(map(ord, a.uid)) % 50000}", "gidNumber: 10000",
        f"homeDirectory: /home/{a.uid}", f"userPassword: {ssha(a.password)}",
    ]
    if a.locked:
        lines.append(f"{LOCK_ATTRIBUTE}: 1")
    return "\n".join(lines) + "\n"


def seed_ldif(service_password: str) -> str:
    """Return the LDIF of the test directory: people, a service account and admin groups."""
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: homesync\nuserPassword: {ssha(service_password)}\n",
        *(_person_ldif(a) for a in ACCOUNTS.values()),
        f"dn: {ADMIN_GROUP_DN}\nobjectClass: groupOfNames\ncn: homesync-admins\n"
        f"member: {ACCOUNTS['ann'].dn}\n",
        f"dn: {POSIX_ADMIN_GROUP_DN}\nobjectClass: posixGroup\ncn: homesync-admins-posix\n"
        "gidNumber: 20000\nmemberUid: bob\n",
    ]
    return "\n".join(entries)


def slapd_conf(directory: Path, root_password: str, tls: bool = False) -> str:
    """Return a slapd.conf keeping everything under directory."""
    schemas = "".join(f"include {SCHEMA_DIR / s}.schema\n" for s in ("core", "cosine", "inetorgperson", "nis"))
    certificates = (f"TLSCACertificateFile {directory}/ca.pem\nTLSCertificateFile {directory}/server.pem\n"
                    f"TLSCertificateKeyFile {directory}/server.key\n") if tls else ""
    return f"""{schemas}{certificates}
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args
modulepath {MODULE_DIR}
moduleload back_mdb
database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ssha(root_password)}
directory {directory}/data
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by dn.exact="{SERVICE_DN}" read
    by self read
    by * none
"""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_ready(process: subprocess.Popen, log_file: Path, offset: int, ports: list[int],
                      timeout: float = 10.0) -> None:
    """Return once slapd has bound its ports ("slapd starting" after offset in its log)
    and accepts connections on them; raise if it exits first (e.g. a port was taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}:\n{log_file.read_text()[offset:][-2000:]}")
        if "slapd starting" in log_file.read_text(errors="replace")[offset:] and all(map(_accepts, ports)):
            return
        time.sleep(0.02)
    raise RuntimeError(f"slapd did not start within {timeout} s")


def _accepts(port: int) -> bool:
    """Return whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def write_certificates(directory: Path) -> None:
    """Write ca.pem, and server.pem/server.key for localhost and 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool, names: list) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("homesync test CA", ca_key, "homesync test CA", ca_key, True, [])
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    (directory / "ca.pem").write_bytes(pem(ca))
    (directory / "server.pem").write_bytes(pem(certificate("localhost", key, "homesync test CA", ca_key, False, names)))
    (directory / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / "server.key").chmod(0o600)


def _prepare(directory: Path, service_password: str, root_password: str, tls: bool) -> Path:
    """Write slapd.conf and load the seed offline with slapadd; return the config path."""
    (directory / "data").mkdir(parents=True)
    if tls:
        write_certificates(directory)
    conf = directory / "slapd.conf"
    conf.write_text(slapd_conf(directory, root_password, tls))
    seed = directory / "seed.ldif"
    seed.write_text(seed_ldif(service_password))
    done = subprocess.run([str(SLAPADD), "-f", str(conf), "-l", str(seed)], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"slapadd failed ({done.returncode}): {done.stderr.strip()}")
    return conf


@contextmanager
def running_slapd(directory: Path, tls: bool = False) -> Iterator[Slapd]:
    """Start a seeded slapd with its files under directory (with a certificate for
    StartTLS and an ldaps:// port when tls); yield it; kill it on exit."""
    if not SLAPD.exists():
        _missing_slapd()
    service_password, root_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    conf = _prepare(directory, service_password, root_password, tls)
    process, port, tls_port = _start(conf, directory / "slapd.log", tls)
    try:
        yield Slapd(directory, port, process.pid, service_password, root_password, tls_port)
    finally:
        _stop(process)


def _start(conf: Path, log_file: Path, tls: bool, attempts: int = 3) -> tuple[subprocess.Popen, int, int]:
    """Start slapd in the foreground on free ports; return (process, port, ldaps port or 0).
    Try new ports if another process took one between choosing and binding it."""
    for attempt in range(attempts):
        port, tls_port = free_port(), 0
        while tls and tls_port in (0, port):
            tls_port = free_port()
        listen = f"ldap://127.0.0.1:{port}/" + (f" ldaps://127.0.0.1:{tls_port}/" if tls else "")
        offset = len(log_file.read_text(errors="replace")) if log_file.exists() else 0
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                [str(SLAPD), "-f", str(conf), "-h", listen, "-d", "256"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_ready(process, log_file, offset, [p for p in (port, tls_port) if p])
            return process, port, tls_port
        except RuntimeError:
            _stop(process)
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _stop(process: subprocess.Popen) -> None:
    """Stop slapd by its pid: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _missing_slapd() -> None:
    message = "slapd is not installed (run `make system-packages`)"
    if os.environ.get("HOMESYNC_REQUIRE_SLAPD"):
        pytest.fail(message)
    pytest.skip(message)


def identity_config(server: Slapd, password_file: Path, **overrides) -> IdentityConfig:
    """Return an [identity] configuration for server, its service password in password_file."""
    settings = dict(
        backend="ldap", urls=(server.url,), bind_dn=server.service_dn,
        bind_password_file=str(server.write_password_file(password_file)),
        user_base=PEOPLE_DN, user_filter="(&(objectClass=inetOrgPerson)(uid={username}))",
        admin_group=ADMIN_GROUP_DN, account_filter=ACCOUNT_FILTER, timeout=2.0,
    )
    settings.update(overrides)
    return IdentityConfig(**settings)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A seeded slapd shared by the tests of one module."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture(scope="module")
def slapd_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A seeded slapd with a test CA's certificate: StartTLS and an ldaps:// port."""
    with running_slapd(tmp_path_factory.mktemp("slapd-tls"), tls=True) as server:
        yield server


@pytest.fixture
def ldap_identity_config(slapd: Slapd, tmp_path: Path) -> IdentityConfig:
    """An [identity] configuration for the module's slapd, password file under tmp_path."""
    return identity_config(slapd, tmp_path / "ldap-password")

