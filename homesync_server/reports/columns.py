"""What the report says of each machine, in one table: the fields of a machine's row
(FIELDS: the JSON report's keys, the CSV's columns, in this order) and the columns of
the text and HTML tables (SHOWN). Each renderer writes a field by its kind, so a new
column of the report is one entry in each tuple here (and, when the index holds it,
one line of homesync_server.index.FLEET_FIELDS; when it is computed from others, one
line of fleet.fleet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One field of a machine's row. kind says how renderers write it: "id" and
    "state" (the server's own words), "user" (a user name), "text" (typed on a
    computer: made printable, escaped, kept from spreadsheets' formulas), "status",
    "time" (Unix time), "seconds" (a duration), "count", "size" (bytes), "flag"."""

    name: str
    kind: str
    type: Any
    in_csv: bool = True


FIELDS = (
    Field("machine_id", "id", str), Field("owner", "user", str), Field("display_name", "text", str),
    Field("machine", "text", str), Field("hostname", "text", str), Field("state", "state", str),
    Field("status", "status", str), Field("last_backup", "time", "float | None"),
    Field("age_seconds", "seconds", "float | None"), Field("archives", "count", int),
    Field("original_size", "size", "int | None"), Field("deduplicated_size", "size", int),
    Field("failed", "count", int), Field("last_seen", "time", "float | None"), Field("enrolled", "time", float),
    Field("agent_version", "text", str), Field("agent_state", "text", str), Field("agent_reason", "text", str),
    # whether the machine makes the report exit non-zero; the CSV has its status instead
    Field("alarming", "flag", bool, in_csv=False),
)

# The CSV's last columns, from the report's fleet-policy part (reports.policy), not the
# machine's row: the policy version the machine applied (empty: retired or no policy yet
# on the server) and whether it lags (has not applied the newest within a day of reaching
# the server). The table, JSON and HTML show the same part as their own section.
POLICY_FIELDS = (Field("policy_version", "count", "int | None"), Field("policy_lagging", "flag", "bool | None"))


@dataclass(frozen=True)
class Column:
    """One column of the machines' table in the text report (header) and on the HTML
    page (title), showing field as kind says: a field's kind, or "age" (how long ago
    a time was) or "reason" (what the agent last said: its reason, else its state)."""

    header: str
    title: str
    kind: str
    field: str
    right: bool = False  # right-aligned on the page (numbers)


SHOWN = (
    Column("STATUS", "Status", "status", "status"),
    Column("OWNER", "Owner", "user", "owner"),
    Column("NAME", "Name", "text", "display_name"),
    Column("MACHINE", "Machine", "text", "machine"),
    Column("LAST BACKUP", "Last backup", "time", "last_backup"),
    Column("AGE", "Age", "age", "last_backup", right=True),
    Column("ARCHIVES", "Archives", "count", "archives", right=True),
    Column("ORIGINAL", "Original", "size", "original_size", right=True),
    Column("STORED", "Stored", "size", "deduplicated_size", right=True),
    Column("FAILED", "Failed", "count", "failed", right=True),
    Column("LAST SEEN", "Last seen", "age", "last_seen"),
    Column("VERSION", "Version", "text", "agent_version"),
    Column("AGENT SAYS", "Agent says", "reason", "agent_reason"),
)
