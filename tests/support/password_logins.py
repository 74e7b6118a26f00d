"""Password logins as an attacker makes them, for the throttling tests: raw paramiko,
from any loopback address, and the limits the admin guide documents."""

from __future__ import annotations

import re
import socket

import paramiko

# The documented limits (docs/admin-guide.md, "Security model").
ACCOUNT_ATTEMPTS = 5
ADDRESS_ATTEMPTS = 50
BLOCKED = re.compile(r"^homesync: error: too many failed logins for this account; try again in \d+ minutes?$")


def guess(server, user: str, password: str, source: str = "127.0.0.1") -> bool:
    """Try one password login with raw paramiko; return whether the transport said yes
    (a refused session says yes too: it can only be told why over a channel)."""
    host, port = server.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=120, source_address=(source, 0))
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.auth_timeout = 120
        transport.start_client(timeout=120)
        transport.auth_password(user, password, fallback=False)
        return transport.is_authenticated()
    except paramiko.AuthenticationException:
        return False
    finally:
        transport.close()
