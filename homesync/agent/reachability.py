"""Whether the backup server answers: one TCP connection attempt with a timeout. The
agent's only network test on hosts without NetworkManager, and its check after a
link-up or a resume that the server is really there before a backup starts. With
several server addresses (the fleet policy's or config.toml's, or one name with several
A/AAAA records), first_answering() is the one failover the agent and a manual
`homesync backup` both use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homesync import transport


@dataclass(frozen=True)
class Reachability:
    """The result of one probe of the backup server."""

    ok: bool
    detail: str
    elapsed: float
    via: str = ""  # the configured address (a name) this one was resolved from


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


RESOLVE_TIMEOUT = 5.0  # a resolver that hangs must not hold up the probe of the other addresses


@dataclass(frozen=True)
class Candidate:
    """One address to probe and the configured address it comes from."""

    address: str
    via: str


async def candidates(addresses: Sequence[str], preferred: str | None = None, *,
                     resolve: Callable[[str], list[str]] = transport.resolve) -> list[Candidate]:
    """Given the configured addresses in order, return what to probe: a name with several
    addresses (A and AAAA records) becomes each of them, in the resolver's order; one that
    resolves to one address (or none) stays as it is. Duplicates are dropped; preferred
    (the address that answered last) goes first when it is among them."""
    loop = asyncio.get_running_loop()
    found: list[Candidate] = []
    for address in addresses:
        try:
            resolved = await asyncio.wait_for(loop.run_in_executor(None, resolve, address), RESOLVE_TIMEOUT)
        except TimeoutError:
            resolved = []
        for one in resolved if len(resolved) > 1 else [address]:
            if all(c.address != one for c in found):
                found.append(Candidate(one, address))
    found.sort(key=lambda c: c.address != preferred)
    return found


async def first_answering(addresses: Sequence[str], *, timeout: float = 2.0, banner: bytes | None = b"SSH-",
                          preferred: str | None = None,
                          resolve: Callable[[str], list[str]] = transport.resolve) -> tuple[str, Reachability]:
    """Probe the addresses (each of a name's several, see candidates) in order, preferred
    first; return the first that answers and its result (its via: the configured address
    it came from), or (none answers) the last and its failure. A dead address costs at
    most timeout, a closed port next to nothing; the next one is tried at once."""
    if not addresses:
        raise ValueError("no server address to probe")
    tried = await candidates(addresses, preferred, resolve=resolve)
    for candidate in tried:
        host, port = transport.parse_address(candidate.address)
        result = dataclasses.replace(await probe_server(host, port, timeout=timeout, banner=banner),
                                     via=candidate.via)
        if result.ok:
            return candidate.address, result
    return tried[-1].address, result
