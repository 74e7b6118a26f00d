"""Times the server observed, not times a client claims: an archive's time for retention,
drills and reports is when the server saw the session that made it. An archive whose
own (claimed) time falls outside that session's window is flagged and never counted.
Pure: it gets borg's listing and the index's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from homesync_server.retention import Archive

# Client clocks drift and NTP may be off by minutes: a claim this far outside the session
# is still believed. A future-dated archive is off by years, not minutes.
TOLERANCE = 600.0


@dataclass(frozen=True)
class Trusted:
    """A repository's archives with the times to use, and the ones never to count."""

    archives: list[Archive]          # oldest first, each with its observed (or bounded) time
    flagged: dict[str, str]          # name -> why it is not counted


def claim_problem(claimed: float, since: float, until: float, tolerance: float = TOLERANCE) -> str:
    """Return why an archive claiming time claimed cannot have been made in a session
    observed from since to until, or '' if it can."""
    if since - tolerance <= claimed <= until + tolerance:
        return ""
    return (f"claims {_utc(claimed)}, outside the session that made it ({_utc(since)} to {_utc(until)}, "
            f"±{tolerance / 60:g} min)")


def bounded(claimed: float, since: float, until: float) -> float:
    """Return claimed moved into [since, until] (the time to record for an archive whose
    claim is within the tolerance)."""
    return min(max(claimed, since), until)


def trusted(listed: Iterable[Archive], rows: Mapping[str, Mapping[str, Any]], now: float) -> Trusted:
    """Given borg's listing, the index's rows by name and the time now, return each
    archive's time to use: the observed time the index has (or its own, if older), else
    borg's own time; an
    archive the index flagged, or one claiming a time after now (no session observed it
    yet), is left out and named in flagged."""
    archives, flagged = [], {}
    for archive in listed:
        row = rows.get(archive.name)
        if row and row.get("flag"):
            flagged[archive.name] = row["flag"]
        elif row and row.get("observed") is not None:  # a claim can only make an archive older
            archives.append(Archive(archive.name, min(row["observed"], archive.time)))
        elif archive.time > now + TOLERANCE:
            flagged[archive.name] = f"claims {_utc(archive.time)}, in the future, and no session was observed"
        else:
            archives.append(Archive(archive.name, archive.time))
    return Trusted(sorted(archives, key=lambda a: (a.time, a.name)), flagged)


def _utc(when: float) -> str:
    try:
        return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{when:g} (not a time)"
