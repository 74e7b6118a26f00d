"""Whether the backup server answers: one TCP connection attempt with a timeout. The
agent's only network test on hosts without NetworkManager, and its check after a
link-up or a resume that the server is really there before a backup starts. With
several server addresses (the fleet policy's), first_answering() is the one failover
the agent and a manual `homesync backup` both use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from homesync import transport


@dataclass(frozen=True)
class Reachability:
    """The result of one probe of the backup server."""

    ok: bool
    detail: str
    elapsed: float


async def probe_server(host: str, port: int, *, timeout: float = 2.0, banner: bytes | None = None) -> Reachability:
    """Try a TCP connection to the server; return whether it answered within the timeout.

    With banner (e.g. b"SSH-"), the server must also send a first line starting with it,
    which tells a live server from a port that merely accepts connections.
    """
    started = time.monotonic()

    def result(ok: bool, detail: str) -> Reachability:
        return Reachability(ok, f"{host}:{port}: {detail}", time.monotonic() - started)

    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return result(False, f"no answer within {timeout:g} s")
    except OSError as exc:
        return result(False, exc.strerror or str(exc))
    try:
        if banner is not None:
            line = await asyncio.wait_for(reader.readline(), max(timeout - (time.monotonic() - started), 0.01))
            if not line.startswith(banner):
                return result(False, f"unexpected greeting {line[:40]!r}")
        return result(True, "answered")
    except (TimeoutError, OSError) as exc:
        return result(False, "no greeting in time" if isinstance(exc, TimeoutError) else str(exc))
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)


async def first_answering(addresses: Sequence[str], *, timeout: float = 2.0,
                          banner: bytes | None = b"SSH-") -> tuple[str, Reachability]:
    """Probe the addresses in order; return the first that answers and its result, or
    (none answers) the last address and its failure. A dead address costs at most timeout."""
    if not addresses:
        raise ValueError("no server address to probe")
    for address in addresses:
        host, port = transport.parse_address(address)
        result = await probe_server(host, port, timeout=timeout, banner=banner)
        if result.ok:
            return address, result
    return addresses[-1], result
