"""The report's formats, in one table: a format is a module that follows Renderer,
registered here under its name. Callers ask the table (renderer(name), RENDERERS);
nothing else names a format, so a new one is one module and one line below.
"""

from __future__ import annotations

from typing import Protocol

from homesync_server.reports import csv, html, json, metrics, table
from homesync_server.reports.model import Report

# The parts of a report a renderer may need beyond its fleet, summary and assurance
# (made only when some renderer asks for them: each costs a query).
GROWTH = "growth"  # storage over time
ACTIVITY = "activity"  # the audit events of the time range
PARTS = frozenset({GROWTH, ACTIVITY})


class Renderer(Protocol):
    """A format. NEEDS: which of PARTS it shows; render(report): the whole text of the
    report in this format. Pure: no I/O, and the same report gives the same text."""

    NEEDS: frozenset[str]

    def render(self, report: Report) -> str: ...


RENDERERS: dict[str, Renderer] = {
    "table": table,
    "json": json,
    "csv": csv,
    "html": html,
    "metrics": metrics,  # Prometheus text: `homesync-server metrics` and serve's endpoint
}


def renderer(name: str) -> Renderer:
    """Return the renderer registered as name; raise KeyError if there is none."""
    return RENDERERS[name]
