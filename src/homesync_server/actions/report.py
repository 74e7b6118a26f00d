"""`homesync-server report`, `audit verify` and `metrics`: gather the fleet from the
index and the directory, compute the report (homesync_server.reports), render it and
write it atomically; walk the audit hash chain; serve or write Prometheus metrics.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from homesync.errors import ConfigError, HomesyncError, IdentityUnavailableError
from homesync_server import audit, metrics
from homesync_server import config as server_config
from homesync_server.config import Layout
from homesync_server.identity import IdentityBackend
from homesync_server.index import Index
from homesync_server.reports import activity, fleet, growth
from homesync_server.reports import csv as csv_format
from homesync_server.reports import html as html_format
from homesync_server.reports import json as json_format
from homesync_server.reports import table as table_format
from homesync_server.reports.model import Report
from homesync_server.reports.period import period
from homesync_server.reports.status import Policy
from homesync_server.services import Services

logger = logging.getLogger(__name__)
FORMATS: dict[str, Callable[[Report], str]] = {
    "table": table_format.render, "json": json_format.render, "csv": csv_format.render, "html": html_format.render}
EXIT_ALARMING = 2  # like a monitoring plugin's CRITICAL; documented in the admin guide
EXIT_BROKEN_CHAIN = 1
METRICS_CACHE_SECONDS = 15.0
DIRECTORY_CACHE_SECONDS = 300.0


def report(layout: Layout, fmt: str, output: str | None, user: str | None, since: str | None,
           until: str | None) -> int:
    """Make the report, print it or write it to output; return EXIT_ALARMING when a
    machine needs attention, else 0."""
    with _without_gc():
        services = Services.open(layout)
        try:
            made = make(services, time.time(), user, since, until, with_growth=fmt in ("html", "json"))
        finally:
            services.close()
        emit(FORMATS[fmt](made), output)
    return EXIT_ALARMING if made.alarming else 0


@contextmanager
def _without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the block runs: a report makes a few
    objects per machine and no cycles, and the collector would walk them all again
    and again (a third of the time of a report on 100,000 machines)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make(services: Services, now: float, user: str | None = None, since: str | None = None,
         until: str | None = None, with_growth: bool = True) -> Report:
    """Return the report as of now, for one user or everyone."""
    start, end = period(since, until, now)
    policy = _policy(services)
    names, directory_error = directory(services.identity)
    rows = fleet.rows_from_records(services.index.fleet_records(user), names, now, policy)
    summary = fleet.summarize(rows)
    counts = services.index.activity_counts(start, end, user, activity.SKIPPED)
    events = activity.events(services.index.activity(start, end, user, activity.SKIPPED, activity.LIMIT))
    storage = _growth(services, rows, summary, now) if with_growth else growth.Growth(0, [], [])
    return Report(now, policy, user, directory_error, rows, summary,
                  activity.Activity(start, end, counts, events), storage)


def _policy(services: Services) -> Policy:
    return Policy.from_hours(services.config.report.warn_age, services.config.report.critical_age)


def directory(identity: IdentityBackend) -> tuple[dict[str, str] | None, str]:
    """Return everyone the directory lists (name: display name) and '', or None and why
    the directory could not be asked: a report never fails because it is down."""
    try:
        return {p.name: p.display_name for p in identity.people()}, ""
    except IdentityUnavailableError as e:
        logger.warning("directory unavailable, names from the index: %s", e.message)
        return None, e.message


def _growth(services: Services, rows: list[fleet.MachineRow], summary: fleet.Summary,
            now: float) -> growth.Growth:
    if not rows:
        return growth.Growth(0, [], [])
    width = growth.bucket_width(min(r.enrolled for r in rows), now)
    top = summary.storage_by_user[:growth.MAX_USERS]
    found = services.index.storage_growth(width, [o for o, _, _ in top])
    return growth.growth(found, {o: d for o, d, _ in top}, width, now)


def emit(text: str, output: str | None) -> None:
    """Print text, or write it to the file output atomically."""
    if output:
        write_atomically(Path(output), text)
    else:
        sys.stdout.write(text)


def write_atomically(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same directory and a rename,
    so that readers (cron mail, node_exporter) never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides the mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HomesyncError(f"cannot write {path}: {e.strerror}") from None


def verify_audit(layout: Layout) -> audit.Verdict:
    """Walk the audit log's hash chain; return the verdict."""
    if not layout.index.exists():
        raise ConfigError(f"no index in {layout.data}", "pass the server's data directory")
    index = Index(layout.index)
    try:
        return audit.verify(_audit_rows(index), index.audit_row_with_hash, index.audit_sequence())
    finally:
        index.close()


def _audit_rows(index: Index) -> Iterator[dict]:
    after = 0
    while page := index.audit_chain_page(after):
        yield from page
        after = page[-1]["id"]


def metrics_text(services: Services, now: float, names: tuple[dict[str, str] | None, str] | None = None) -> str:
    """Return the fleet's metrics in the Prometheus text format."""
    names = names or directory(services.identity)
    rows = fleet.rows_from_records(services.index.fleet_records(), names[0], now, _policy(services))
    return metrics.render(rows, fleet.summarize(rows), now)


def write_metrics(layout: Layout, output: str | None) -> None:
    """Print the metrics, or write them atomically for node_exporter's textfile collector."""
    with _without_gc():
        services = Services.open(layout)
        try:
            text = metrics_text(services, time.time())
        finally:
            services.close()
        emit(text, output)


@contextmanager
def metrics_endpoint(layout: Layout) -> Iterator[metrics.MetricsEndpoint | None]:
    """Serve GET /metrics on [report] metrics_listen while the block runs (nothing when
    it is not set), from a read-only use of the index; the directory is asked at most
    every DIRECTORY_CACHE_SECONDS."""
    listen = server_config.load(layout).report.metrics_listen
    if not listen:
        yield None
        return
    services = Services.open(layout)
    names = metrics.Cached(lambda: directory(services.identity), DIRECTORY_CACHE_SECONDS)
    produce = metrics.Cached(lambda: metrics_text(services, time.time(), names()), METRICS_CACHE_SECONDS)
    try:
        endpoint = metrics.MetricsEndpoint(*server_config.parse_listen(listen), produce)
    except OSError as e:
        services.close()
        raise ConfigError(f"cannot serve metrics on {listen}: {e.strerror}",
                          "check [report] metrics_listen") from None
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
        services.close()
