"""Waiting for something to become true in the agent's integration tests, with a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], timeout: float = 1.0, what: str = "condition") -> float:
    """Wait until predicate() is true; return the time it took; fail after timeout seconds."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.001)
    return time.monotonic() - started


def eventually_sync(predicate: Callable[[], bool], timeout: float = 2.0, what: str = "condition") -> float:
    """Like eventually(), for code outside an event loop."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - started
