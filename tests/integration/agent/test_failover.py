"""Failing over between server addresses with real sockets on loopback: a closed port
costs nothing, a listener that accepts but never greets costs the probe's timeout, a
blackholed address (its TCP connect never completes) costs the short per-address connect
timeout; a name's several addresses are each tried; the one that answered last goes first."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from homesync import transport
from homesync.agent import reachability
from homesync.errors import ConnectionFailedError
from tests.support.processes import free_port


@contextlib.contextmanager
def blackholed():
    """Yield the address of a listener whose accept queue is full and never drained: a
    TCP connect to it gets no SYN-ACK and waits until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    filler = socket.create_connection(listener.getsockname(), timeout=2)  # takes the one place in the queue
    try:
        yield address
    finally:
        filler.close()
        listener.close()


@contextlib.contextmanager
def silent():
    """Yield the address of a listener that accepts (the kernel's backlog) and never greets."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@contextlib.contextmanager
def greeting():
    """Yield the address of a listener that says an SSH greeting to every connection."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    listener.settimeout(0.1)
    stop = False

    def serve():
        while not stop:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.sendall(b"SSH-2.0-test\r\n")
    import threading
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop = True
        thread.join()
        listener.close()


def test_closed_silent_and_blackholed_addresses_are_passed_over_quickly():
    closed = f"127.0.0.1:{free_port()}"
    with blackholed() as hole, silent() as mute, greeting() as live:
        started = time.monotonic()
        address, result = asyncio.run(reachability.first_answering([closed, hole, mute, live], timeout=0.5))
        elapsed = time.monotonic() - started
    print(f"closed port + blackholed + silent listener, then the live one: {elapsed:.2f} s")
    assert address == live and result.ok
    assert 0.9 < elapsed < 2.5  # two timeouts of 0.5 s (blackholed, silent); the closed port costs nothing


def test_a_names_several_addresses_are_each_probed_and_the_last_that_answered_goes_first():
    """candidates() turns a name into each address its resolver gives (here a resolver
    naming a dead and a live address: the test machine's hosts file is not ours to edit;
    tests/end_to_end/test_server_addresses.py does it in a private mount namespace)."""
    closed = f"127.0.0.1:{free_port()}"
    with blackholed() as hole, greeting() as live:
        records = {"nodes.example.org:2222": [hole, closed, live]}
        resolve = lambda a: records.get(a, [a])  # noqa: E731
        found = asyncio.run(reachability.candidates(["nodes.example.org:2222", live], resolve=resolve))
        assert [c.address for c in found] == [hole, closed, live]  # the live one once
        assert {c.via for c in found} == {"nodes.example.org:2222"}
        started = time.monotonic()
        address, result = asyncio.run(reachability.first_answering(["nodes.example.org:2222"], timeout=1,
                                                                   resolve=resolve))
        first = time.monotonic() - started
        assert address == live and result.via == "nodes.example.org:2222"
        started = time.monotonic()
        again, _ = asyncio.run(reachability.first_answering(["nodes.example.org:2222"], timeout=1,
                                                            resolve=resolve, preferred=address))
        second = time.monotonic() - started
    print(f"a name's blackholed, closed and live addresses: first probe {first:.2f} s, "
          f"then with the live one first {second:.2f} s")
    assert again == live and 0.9 < first < 3 and second < 0.5


def test_a_connection_to_a_name_tries_its_addresses_with_a_short_timeout_each(monkeypatch):
    """Session.connect's socket (transport.open_socket): a blackholed address of a name costs
    ADDRESS_TIMEOUT, not the whole connect timeout; the address that accepted goes first next."""
    with blackholed() as hole, greeting() as live:
        monkeypatch.setattr(transport, "resolve", lambda a: [hole, live] if a == "nodes.example.org:2222" else [a])
        monkeypatch.setattr(transport, "ADDRESS_TIMEOUT", 0.5)
        started = time.monotonic()
        with transport.open_socket("nodes.example.org:2222", timeout=10) as sock:
            assert sock.recv(4) == b"SSH-"
            assert sock.gettimeout() == 10
        first = time.monotonic() - started
        started = time.monotonic()
        transport.open_socket("nodes.example.org:2222", timeout=10).close()
        second = time.monotonic() - started
        assert 0.4 < first < 2 and second < 0.3
        monkeypatch.setattr(transport, "resolve", lambda a: [hole, f"127.0.0.1:{free_port()}"])
        try:
            transport.open_socket("other.example.org:2222", timeout=10)
        except ConnectionFailedError as e:
            assert f"{hole} did not answer" in e.message and "refused" in e.message
        else:
            raise AssertionError("no address answered, yet a connection was made")
