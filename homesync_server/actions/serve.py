"""`homesync-server serve`: run the SSH endpoint in the foreground until SIGTERM/SIGINT,
with the post-session checks and the sweep of lapsed restore grants in threads beside
it, and the metrics endpoint when [report] metrics_listen is set. It refuses a damaged
index, and indexes the machines whose repositories an emptied or lost index no longer
lists, before it listens."""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from homesync.errors import ConfigError
from homesync_server import config as server_config
from homesync_server import index_damage, memory, reserve
from homesync_server.actions import reindex, report
from homesync_server.actions.setup import host_key
from homesync_server.config import Layout
from homesync_server.endpoint import Endpoint
from homesync_server.metrics_http import Cached, MetricsEndpoint
from homesync_server.nodes import DRAINING, Heartbeat, refuse_a_live_twin
from homesync_server.services import Services
from homesync_server.session_checks import SessionChecks

logger = logging.getLogger(__name__)
METRICS_CACHE_SECONDS = 15.0
DIRECTORY_CACHE_SECONDS = 300.0
GRANT_SWEEP_SECONDS = 60.0
SERVER_ACTOR = "server"


def serve(layout: Layout, listen: str | None, ready=None) -> None:
    """Serve until a stop signal. The first SIGTERM (or SIGINT) drains: no new
    connection nor session, the running sessions finish within [node] drain_seconds,
    the node says so in the index; a second one stops at once. Every session is closed
    cleanly on the way out (borg rolls back to its last commit or checkpoint)."""
    memory.fewer_arenas()
    memory.install_trace()
    services = Services.open(layout)
    try:
        services.index.check_integrity()
        refuse_a_live_twin(services.index, services.node_id, services.config.node.dead_after)
        _index_lost_machines(services)
        reserve.keep(layout.repos)
    except BaseException:
        services.close()
        raise
    host, port = server_config.parse_listen(listen or services.config.listen)
    endpoint = Endpoint(services, host_key(layout), host, port)
    heartbeat = Heartbeat(services.index, services.node_id, "%s:%d" % endpoint.address,
                          services.config.node.heartbeat_seconds, endpoint.slots.running)
    try:
        heartbeat.start()
    except BaseException:
        endpoint.stop()
        services.close()
        raise
    checks = SessionChecks(services)
    services.session_checks = checks
    checks.start()
    stop, drain = threading.Event(), threading.Event()
    threading.Thread(target=_sweep_grants, args=(services, stop), daemon=True, name="grant-sweep").start()

    def on_signal(signum, frame):
        if drain.is_set():
            # only the event: the main thread may be inside endpoint.stop() (its lock
            # held) when this runs, and it stops the endpoint itself once woken
            logger.info("received signal %d again, stopping now", signum)
            stop.set()
            return
        logger.info("received signal %d, draining: no new session, the running ones may finish", signum)
        drain.set()
        endpoint.drain()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bound = endpoint.address
    logger.info("node %s listening on %s:%d", services.node_id, *bound)
    if ready:
        ready(bound)
    try:
        endpoint.serve_forever()
        if drain.is_set() and not stop.is_set():
            _drain(services, endpoint, checks, heartbeat, stop)
    finally:
        stop.set()
        endpoint.stop()
        checks.stop()
        heartbeat.stop()
        services.close()
        logger.info("stopped")


def _drain(services: Services, endpoint: Endpoint, checks: SessionChecks, heartbeat: Heartbeat,
           stop: threading.Event) -> None:
    """Say in the index that this node drains, then wait until its sessions and the
    checks they queued are done, [node] drain_seconds at most (or a second signal)."""
    heartbeat.set_state(DRAINING)
    deadline = time.monotonic() + services.config.node.drain_seconds
    while time.monotonic() < deadline and not stop.is_set():
        running = endpoint.slots.running()
        if running == 0 and checks.idle():
            logger.info("drained: no session runs")
            return
        stop.wait(0.2)
    why = "a second signal" if stop.is_set() else "drain bound reached"
    logger.warning("%s with %d session(s) running: closing them (borg keeps its last checkpoint; the agents "
                   "try again)", why, endpoint.slots.running())


def _sweep_grants(services: Services, stop: threading.Event) -> None:
    """End lapsed restore grants every GRANT_SWEEP_SECONDS, so that a restore that ended
    without a report is audited within minutes (RestoreGrants.sweep)."""
    while not stop.wait(GRANT_SWEEP_SECONDS):
        try:
            services.grants.sweep()
        except index_damage.UNUSABLE as e:
            index_damage.refused(e, "every session")
        except Exception:  # a busy or broken index: the next round tries again
            logger.exception("ending lapsed restore grants failed")


def _index_lost_machines(services: Services) -> None:
    """Index the machines whose repositories exist but whom the index does not list (it
    was lost, emptied or replaced), so that their agents are not turned away."""
    found = reindex.index_missing(services, SERVER_ACTOR)
    if not found:
        return
    logger.error("the index %s did not list %d machines whose repositories are in %s (it was lost, emptied or "
                 "replaced): indexed %d machines from their repositories, with %d archives (audit event reindex)",
                 services.index.where, found["missing"], services.layout.repos,
                 len(found["machines"]), found["archives"])
    for problem in found["problems"]:
        logger.error("reindex: %s", problem)


@contextmanager
def metrics_endpoint(layout: Layout) -> Iterator[MetricsEndpoint | None]:
    """Serve GET /metrics on [report] metrics_listen while the block runs (nothing when
    it is not set), from a read-only use of the index; the directory is asked at most
    every DIRECTORY_CACHE_SECONDS."""
    listen = server_config.load(layout).report.metrics_listen
    if not listen:
        yield None
        return
    sources = report.Sources.open(layout)
    names = Cached(lambda: report.directory(sources.identity), DIRECTORY_CACHE_SECONDS)
    produce = Cached(lambda: report.metrics_text(sources, time.time(), names()), METRICS_CACHE_SECONDS)
    try:
        endpoint = MetricsEndpoint(*server_config.parse_listen(listen), produce)
    except OSError as e:
        sources.close()
        raise ConfigError(f"cannot serve metrics on {listen}: {e.strerror}",
                          "check [report] metrics_listen") from None
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
        sources.close()
