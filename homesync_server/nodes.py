"""Several `serve` nodes on one index (issue 14): each node's heartbeat in the index
(Heartbeat), whether a node counts as dead (no heartbeat for dead_after of its own
intervals), and leases for the jobs that must run once at a time (Lease: taken,
renewed by a thread while the job runs, released; a dead holder's lease expires).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from homesync import __version__
from homesync.errors import ConfigError, JobRunningError
from homesync_server.index_store import IndexStore

logger = logging.getLogger(__name__)
SERVING, DRAINING, STOPPED = "serving", "draining", "stopped"


def is_dead(node: dict[str, Any], now: float, dead_after: int) -> bool:
    """Return whether the index shows a node dead: it did not stop cleanly and wrote no
    heartbeat for dead_after of its intervals."""
    return node["state"] != STOPPED and now - node["heartbeat"] > dead_after * node["heartbeat_seconds"]


def described(nodes: list[dict[str, Any]], now: float, dead_after: int) -> list[dict[str, Any]]:
    """Return the nodes as `homesync-server nodes` shows them: each row with the age of
    its heartbeat (seconds) and whether it is dead."""
    return [dict(n, age=max(now - n["heartbeat"], 0.0), dead=is_dead(n, now, dead_after)) for n in nodes]


def dead_nodes(index: IndexStore, dead_after: int, now: float | None = None) -> set[str]:
    """Return the ids of the nodes the index shows dead."""
    now = time.time() if now is None else now
    return {n["id"] for n in index.nodes() if is_dead(n, now, dead_after)}


class Heartbeat:
    """This node's row in the index, written every interval by a thread of its own:
    its address, version, running sessions and state (serving, then draining on
    SIGTERM, stopped at the end). A heartbeat the index cannot take is tried again at
    the next interval; the node goes on serving meanwhile."""

    def __init__(self, index: IndexStore, node_id: str, address: str, interval: float,
                 sessions: Callable[[], int]) -> None:
        self.index, self.node_id, self.address, self.interval = index, node_id, address, interval
        self.sessions = sessions
        self.state = SERVING
        self.started = time.time()
        self.boot = boot_id()  # the same while this process runs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def start(self) -> None:
        """Register the node (raise if the index cannot take it: serve does not start
        unregistered), then keep its heartbeat."""
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        self.index.node_heartbeat({"id": self.node_id, "address": self.address, "version": __version__,
                                   "state": self.state, "sessions": self.sessions(), "pid": os.getpid(),
                                   "started": self.started, "heartbeat": time.time(),
                                   "heartbeat_seconds": self.interval, "boot": self.boot})

    def set_state(self, state: str) -> None:
        """Say state in the index now (draining, stopped), not at the next interval."""
        self.state = state
        try:
            self.beat()
        except Exception as e:  # the index away: the state goes in with the next heartbeat
            logger.warning("could not record node %s as %s: %s", self.node_id, state, getattr(e, "message", e))

    def stop(self) -> None:
        """Stop the heartbeat and record the node as stopped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval + 5)
        self.set_state(STOPPED)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as e:  # the index away or damaged: sessions say so; one line until it heals
                if not failing:
                    logger.warning("could not write node %s's heartbeat (the other nodes may count it dead "
                                   "until it can): %s", self.node_id, getattr(e, "message", None) or repr(e))
                failing = True
                continue
            if failing:
                logger.info("node %s's heartbeat is written again", self.node_id)
            failing = False


def boot_id() -> str:
    """Return this machine's boot id (new at every boot, its own on a cloned machine), or
    '' where the kernel does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _serves_here(pid: int) -> bool:
    """Return whether pid is a running `homesync-server serve` on this machine."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"homesync-server") for a in argv) and b"serve" in argv


def refuse_a_live_twin(index: IndexStore, node_id: str, dead_after: int, poll: float = 0.2) -> None:
    """Raise ConfigError if another process serves as node_id: its row in the index is
    neither stopped nor dead and that process runs. Two nodes with one id would share
    one borg host id, and borg takes a lock of its own host id whose pid it does not see
    for stale: it would break the other node's lock under a running backup. A row
    written on this machine since its boot is judged by its pid at once (a restart after
    a crash goes on at once); one from elsewhere is watched until it beats again (a twin)
    or counts dead (dead_after of its intervals at most: a node moved to new hardware)."""
    def row() -> dict[str, Any] | None:
        return next((n for n in index.nodes() if n["id"] == node_id), None)

    def twin(node: dict[str, Any]) -> ConfigError:
        return ConfigError(f"node id {node_id!r} is in use by a live node (pid {node['pid']}, listening on "
                           f"{node['address']}, heartbeat {max(time.time() - node['heartbeat'], 0):.1f} s ago)",
                           "give each node its own id: [node] id in server.toml or $HOMESYNC_NODE_ID")
    seen = row()
    if seen is None or seen["state"] == STOPPED or is_dead(seen, time.time(), dead_after):
        return
    if seen["boot"] and seen["boot"] == boot_id():
        if seen["pid"] != os.getpid() and _serves_here(seen["pid"]):
            raise twin(seen)
        return
    logger.info("node %s's row in the index shows a heartbeat %.1f s ago (pid %s, another machine or boot): "
                "waiting until it counts dead, or beats again (another node with this id)",
                node_id, time.time() - seen["heartbeat"], seen["pid"])
    while (now := row()) is not None and now["state"] != STOPPED and not is_dead(now, time.time(), dead_after):
        if now["heartbeat"] != seen["heartbeat"]:
            raise twin(now)
        time.sleep(poll)


class LeaseHeld(Exception):
    """Another holder has the lease (its row says who, and until when)."""

    def __init__(self, lease: dict[str, Any]) -> None:
        super().__init__(lease["name"])
        self.lease = lease


class Lease:
    """A lease in the index for one job that must run once at a time (a repository's
    prune, the drills), held while the block runs: taken for `seconds`, renewed every
    third of that by a thread, released at the end. Raise LeaseHeld on entry if another
    holder has it. A holder that dies stops renewing: its lease expires and another
    node takes it. `lost` is set if a renewal found it gone (the job should stop)."""

    def __init__(self, index: IndexStore, name: str, node_id: str, seconds: float = 60.0) -> None:
        self.index, self.name, self.node_id, self.seconds = index, name, node_id, seconds
        self.holder = f"{node_id}:{os.getpid()}:{threading.get_ident()}"
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Lease":
        lease = self.index.take_lease(self.name, self.holder, self.node_id, self.seconds, time.time())
        if lease["holder"] != self.holder:
            raise LeaseHeld(lease)
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{self.name}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(10)
        try:
            self.index.release_lease(self.name, self.holder)
        except Exception as e:  # it expires by itself
            logger.warning("could not release the lease %s (it expires by itself): %s", self.name,
                           getattr(e, "message", e))

    def _renew(self) -> None:
        while not self._done.wait(self.seconds / 3):
            try:
                if not self.index.renew_lease(self.name, self.holder, self.seconds, time.time()):
                    logger.error("the lease %s was lost (it expired and another node took it)", self.name)
                    self.lost.set()
                    return
            except Exception as e:  # the index away for a moment: try again before it expires
                logger.warning("could not renew the lease %s: %s", self.name, getattr(e, "message", e))


@contextmanager
def job_lease(services, job: str, what: str) -> Iterator[Lease]:
    """Hold the lease of a job that runs once at a time on the whole service (job: its
    name in the index; what: the job in the user's words); raise JobRunningError
    naming the node that runs it."""
    try:
        with Lease(services.index, job, services.node_id, services.config.node.lease_seconds) as lease:
            yield lease
    except LeaseHeld as e:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.lease["taken"]))
        raise JobRunningError(f"{what} already running on node {e.lease['node']} (since {since})",
                              "wait for it to end; if that node died, its lease expires within "
                              f"{services.config.node.lease_seconds:g} s") from None
