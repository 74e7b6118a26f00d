"""`homesync-server report`, `audit verify` and `metrics`: gather the fleet from the
index and the directory, compute the report (homesync_server.reports), render it and
write it atomically; walk the audit hash chain; compute or write Prometheus metrics.

These commands run from cron and monitoring, so they open only what they read (the
configuration, the index and the directory: Sources), never the repositories, the
escrow key or the SSH stack.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from homesync import exits, files
from homesync.errors import ConfigError, IdentityUnavailableError, OutputError
from homesync_server import audit
from homesync_server import config as server_config
from homesync_server.config import Layout, ServerConfig
from homesync_server.identity import IdentityBackend, open_backend
from homesync_server import index_store
from homesync_server.index_store import IndexStore, open_index
from homesync_server.reports import activity, assurance, fleet, formats, growth
from homesync_server.reports import policy as report_policy
from homesync_server.reports.assurance import Assurance
from homesync_server.reports.model import Report
from homesync_server.reports.period import period
from homesync_server.reports.status import Policy

logger = logging.getLogger(__name__)
FORMATS = formats.RENDERERS  # what --format offers
METRICS = "metrics"  # the format of `homesync-server metrics` and of serve's endpoint
Asked = tuple[dict[str, str] | None, str]  # what directory() returns
EXIT_ALARMING = exits.REPORT_CRITICAL
EXIT_BROKEN_CHAIN = exits.AUDIT_BROKEN
OUTPUT_HINT = "check that its directory exists and that the server's user may write there"


@dataclass
class Sources:
    """What reports and metrics read (homesync_server.services.Services has the same
    three, opened with everything else the server needs)."""

    config: ServerConfig
    index: IndexStore
    identity: IdentityBackend

    @classmethod
    def open(cls, layout: Layout) -> "Sources":
        """Open the data directory's configuration, index and directory backend; raise
        ConfigError if it is not a data directory."""
        config = server_config.load(layout)
        return cls(config, open_index(layout, config=config), open_backend(config.identity, layout.data))

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> "Sources":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def report(layout: Layout, fmt: str, output: str | None, user: str | None, since: str | None,
           until: str | None) -> int:
    """Make the report, print it or write it to output; return EXIT_ALARMING when a
    machine needs attention, else 0."""
    renderer = formats.renderer(fmt)
    with Sources.open(layout) as sources:
        made = make(sources, time.time(), user, since, until, renderer.NEEDS)
    emit(renderer.render(made), output)
    return EXIT_ALARMING if made.needs_attention else 0


def make(sources: Sources, now: float, user: str | None = None, since: str | None = None,
         until: str | None = None, needs: frozenset[str] = formats.PARTS, asked: Asked | None = None) -> Report:
    """Return the report as of now, for one user or everyone, with every machine, and
    of formats.PARTS only those in needs (asked: the directory's answer, when it was
    asked already)."""
    start, end = period(since, until, now)
    policy = Policy.from_hours(sources.config.report.warn_age, sources.config.report.critical_age)
    names, directory_error = asked or directory(sources.identity)
    records = sources.index.fleet_columns(user)
    machines = fleet.fleet(records, names, now, policy, sources.index.display_names())
    summary = fleet.summarize(machines)
    storage = _growth(sources.index, summary, min(machines["enrolled"], default=None), now) \
        if formats.GROWTH in needs else growth.Growth(0, [], [])
    done = _activity(sources.index, start, end, user) if formats.ACTIVITY in needs else _no_activity(start, end)
    return Report(now, policy, user, directory_error, machines, summary, done, storage,
                  sum(machines["alarming"]), _assurance(sources.index, user),
                  report_policy.fleet_policy(sources.index.policy_version(), records, now))


def _activity(index: IndexStore, start: float, end: float, user: str | None) -> activity.Activity:
    return activity.Activity(start, end, index.activity_counts(start, end, user, activity.SKIPPED),
                             activity.events(index.activity(start, end, user, activity.SKIPPED, activity.LIMIT)))


def _no_activity(start: float, end: float) -> activity.Activity:
    return activity.Activity(start, end, {}, [])


def _assurance(index: IndexStore, user: str | None) -> Assurance:
    counts, not_passed = index.drill_outcomes(user, assurance.LISTED)
    return assurance.assurance(counts, not_passed, index.frozen_by_mass_change(user), index.frozen_by_history(user))


def directory(identity: IdentityBackend) -> Asked:
    """Return everyone the directory lists (name: display name) and '', or None and why
    the directory could not be asked: a report never fails because it is down."""
    try:
        return {p.name: p.display_name for p in identity.people()}, ""
    except IdentityUnavailableError as e:
        logger.warning("directory unavailable, names from the index: %s", e.message)
        return None, e.message


def _growth(index: IndexStore, summary: fleet.Summary, first_enrolled: float | None, now: float) -> growth.Growth:
    if first_enrolled is None:
        return growth.Growth(0, [], [])
    width = growth.bucket_width(first_enrolled, now)
    top = summary.storage_by_user[:growth.MAX_USERS]
    found = index.storage_growth(width, [o for o, _, _ in top])
    return growth.growth(found, {o: d for o, d, _ in top}, width, now)


def emit(text: str, output: str | None, durable: bool = True) -> None:
    """Print text, or write it to the file output atomically (and, when durable, on disk
    before it replaces the old file)."""
    if output:
        write_atomically(Path(output), text, durable)
    else:
        sys.stdout.write(text)


def write_atomically(path: Path, text: str, durable: bool = True) -> None:
    """Write text to path atomically, so that readers (cron mail, node_exporter) never
    see half a file, with the mode the umask gives; durable: fsync first (a report kept
    as evidence; not metrics, rewritten every few minutes: 75 MB synced each time would
    cost the disk more than a lost file costs). Raise OutputError if it cannot."""
    try:
        files.write_atomically(path, text.encode("utf-8"), 0o666, durable)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}", OUTPUT_HINT) from None


def verify_audit(layout: Layout) -> audit.Verdict:
    """Walk the audit log's hash chain; return the verdict."""
    if index_store.missing(layout):
        raise ConfigError(f"no index in {layout.data}", "pass the server's data directory")
    index = open_index(layout)
    try:
        return verify_chain(index)
    finally:
        index.close()


def verify_chain(index: IndexStore) -> audit.Verdict:
    """Walk an open index's audit hash chain; return the verdict."""
    return audit.verify(_audit_rows(index), index.audit_row_with_hash, index.audit_sequence())


def _audit_rows(index: IndexStore) -> Iterator[dict]:
    after = 0
    while page := index.audit_chain_page(after):
        yield from page
        after = page[-1]["id"]


def metrics_text(sources: Sources, now: float, asked: Asked | None = None) -> str:
    """Return the fleet's metrics in the Prometheus text format (asked: the directory's
    answer, when it was asked already, as `serve`'s endpoint does every few minutes)."""
    renderer = formats.renderer(METRICS)
    return renderer.render(make(sources, now, needs=renderer.NEEDS, asked=asked))


def write_metrics(layout: Layout, output: str | None) -> None:
    """Print the metrics, or write them atomically for node_exporter's textfile collector."""
    with Sources.open(layout) as sources:
        text = metrics_text(sources, time.time())
    emit(text, output, durable=False)
