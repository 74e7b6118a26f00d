"""Prometheus metrics: the fleet's backup statuses, ages, sizes and failures in the
text exposition format (version 0.0.4), written to a file for node_exporter's textfile
collector or served by homesync_server.metrics_http.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import add, is_not
from typing import Iterable

from homesync_server.reports.fleet import Fleet
from homesync_server.reports.model import Report
from homesync_server.reports.text import Memo

NEEDS: frozenset[str] = frozenset()  # neither the activity nor the storage over time
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The per-machine families are labelled by the machine's id only; its name, owner, host
# and agent version are the labels of homesync_machine_info (the Prometheus "info
# metric" pattern: renaming a machine changes one series, not nine, and a fleet's
# metrics are half the size). PromQL joins them: `... * on(machine) group_left(name,
# owner) homesync_machine_info`.
# (name, help, the machine row's field holding the value; a machine whose value is None is left out)
PER_MACHINE: tuple[tuple[str, str, str], ...] = (
    ("homesync_machine_last_backup_timestamp_seconds", "End of the newest successful backup (Unix time).",
     "last_backup"),
    ("homesync_machine_backup_age_seconds", "Age of the newest successful backup.", "age_seconds"),
    ("homesync_machine_archives", "Successful backups (archives) indexed.", "archives"),
    ("homesync_machine_original_bytes", "Original size of the newest successful backup.", "original_size"),
    ("homesync_machine_deduplicated_bytes", "Deduplicated bytes the machine's backups added to its repository.",
     "deduplicated_size"),
    ("homesync_machine_failed_backups", "Failed backups reported by the agent and indexed.", "failed"),
    ("homesync_machine_last_seen_timestamp_seconds", "When the agent last reached the server (Unix time).",
     "last_seen"),
)


MACHINE_FAMILIES: tuple[tuple[str, str], ...] = (
    ("homesync_machine_info", "The machine's name, owner, host and agent version (always 1)."),
    ("homesync_machine_status", "The machine's backup status (1 for its current status)."),
    *((name, help_text) for name, help_text, _ in PER_MACHINE))


def escape_label(value: str) -> str:
    """Return a label value escaped for the text format (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def status_label(status: str) -> str:
    """Return a status as a label value: lower case, words joined by '_'."""
    return status.lower().replace(" ", "_")


def render(report: Report) -> str:
    """Return the metrics of the report's fleet, drills and mass-change freezes in the
    Prometheus text format."""
    summary, assured, now = report.summary, report.assurance, report.generated_at
    lines: list[str] = []
    _family(lines, "homesync_machines", "Machines by backup status.",
            ((f'{{status="{status_label(s)}"}}', n) for s, n in summary.by_status.items()))
    if summary.protected_share is not None:
        _family(lines, "homesync_protected_ratio", "Share of machines expected to back up that are within policy.",
                [("", summary.protected_share)])
    for (name, help_text), block in zip(MACHINE_FAMILIES, _machine_samples(report.machines)):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        if block:
            lines.append(block)
    _user_storage(lines, summary.storage_by_user)
    _family(lines, "homesync_drill_machines", "Machines by the result of their newest disaster-recovery drill.",
            ((f'{{result="{escape_label(result)}"}}', n)
             for result, n in {"passed": 0, "failed": 0, **assured.drilled}.items()))
    _family(lines, "homesync_drill_newest_timestamp_seconds", "When the newest drill finished (Unix time).",
            [("", assured.newest_drill)])
    _family(lines, "homesync_mass_change_frozen_machines",
            "Machines whose pruning a mass change froze until an admin releases it.", [("", len(assured.frozen))])
    _family(lines, "homesync_metrics_generated_timestamp_seconds", "When these metrics were computed.",
            [("", now)])
    lines.append("")  # the final newline, without copying the whole text once more
    return "\n".join(lines)


def _machine_samples(machines: Fleet) -> list[str]:
    """Return the sample lines of the per-machine families, one text per family of
    MACHINE_FAMILIES."""
    ids = _escaped(machines["machine_id"])
    owners, versions, statuses = Memo(escape_label), Memo(escape_label), Memo(status_label)  # shared by many
    info = map('homesync_machine_info{machine="%s",name="%s",owner="%s",hostname="%s",agent_version="%s"} 1'.__mod__,
               zip(ids, _escaped(machines["machine"]), map(owners.__getitem__, machines["owner"]),
                   _escaped(machines["hostname"]), map(versions.__getitem__, machines["agent_version"])))
    heads = list(map('{machine="%s"} '.__mod__, ids))  # each sample line is name + head + value
    status = map('homesync_machine_status{machine="%s",status="%s"} 1'.__mod__,
                 zip(ids, map(statuses.__getitem__, machines["status"])))
    blocks = ["\n".join(info), "\n".join(status)]
    for name, _, field in PER_MACHINE:
        blocks.append("\n".join(_samples(name, heads, machines[field])))
    return blocks


def _user_storage(lines: list[str], storage_by_user: list[tuple[str, str, int]]) -> None:
    """Append the family of each user's deduplicated bytes (25,000 users: column by column)."""
    name = "homesync_user_deduplicated_bytes"
    lines.append(f"# HELP {name} Deduplicated bytes of all of a user's machines.")
    lines.append(f"# TYPE {name} gauge")
    heads = list(map('{owner="%s"} '.__mod__, _escaped([owner for owner, _, _ in storage_by_user])))
    lines.extend(_samples(name, heads, [n for _, _, n in storage_by_user]))


def _escaped(values: list[str]) -> list[str]:
    """Return escape_label of each value, escaping them all as one text (a control
    character none of them holds separates them), which is one C call per kind."""
    joined = "\x00".join(values)
    if joined.count("\x00") != len(values) - 1:
        return list(map(escape_label, values))
    return escape_label(joined).split("\x00") if values else []


def _samples(name: str, heads: list[str], values: list[float | None]) -> Iterable[str]:
    """Return the sample lines of one family, name + head + value for each machine
    whose value is not None (heads: its labels and a space)."""
    kept = list(map(is_not, values, repeat(None)))
    numbers = compress(values, kept)
    # repr of a plain int or float is what _number writes; anything else goes through it
    texts = map(repr if set(map(type, values)) <= _PLAIN else _number, numbers)
    return map(add, map(name.__add__, compress(heads, kept)), texts)


def _family(lines: list[str], name: str, help_text: str, samples: Iterable[tuple[str, float | None]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    lines.extend(f"{name}{labels} {_number(v)}" for labels, v in samples if v is not None)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


_PLAIN = frozenset((int, float, bool, type(None)))
