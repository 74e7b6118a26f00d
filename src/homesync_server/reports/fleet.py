"""The fleet part of the report: one row per machine with its status, and the summary
(share protected within policy, ages of the recovery points, storage per user). Pure:
it gets the index's aggregates, what the directory says, the time and the policy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, fields
from functools import partial
from itertools import compress, groupby, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any, Iterable

from homesync_server.reports import status as st
from homesync_server.reports.status import Policy
from homesync_server.index import FLEET_COLUMNS

DAY = 86400.0
# Recovery-point age buckets: (label, upper bound in seconds, inclusive).
AGE_BUCKETS = (("< 1 h", 3600.0), ("1 h – 1 d", DAY), ("1–2 d", 2 * DAY), ("2–7 d", 7 * DAY),
               ("1–4 weeks", 28 * DAY), ("> 4 weeks", float("inf")))
NEVER_BUCKET = "never"
_UPPERS = [upper for _, upper in AGE_BUCKETS]
_BUCKET_LABELS = [label for label, _ in AGE_BUCKETS] + [NEVER_BUCKET]
_EXPECTED = frozenset(st.EXPECTED)
is_not_none = partial(is_not, None)


@dataclass(slots=True)
class MachineRow:
    """One machine as the report shows it."""

    machine_id: str
    owner: str
    display_name: str
    machine: str
    hostname: str
    state: str
    status: str
    last_backup: float | None
    age_seconds: float | None
    archives: int
    original_size: int | None
    deduplicated_size: int
    failed: int
    last_seen: float | None
    enrolled: float
    agent_version: str
    agent_state: str
    agent_reason: str
    alarming: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(FIELDS, _values(self)))


FIELDS = tuple(f.name for f in fields(MachineRow))
_values = attrgetter(*FIELDS)


@dataclass(frozen=True)
class Summary:
    """The fleet at a glance."""

    machines: int
    by_status: dict[str, int]
    expected: int
    protected: int
    age_buckets: list[tuple[str, int]]
    storage_total: int
    storage_by_user: list[tuple[str, str, int]]  # (owner, display name, deduplicated bytes)

    @property
    def protected_share(self) -> float | None:
        """Return the share of machines expected to back up that are OK, or None."""
        return self.protected / self.expected if self.expected else None

    def as_dict(self) -> dict[str, Any]:
        return {"machines": self.machines, "by_status": self.by_status, "expected": self.expected,
                "protected": self.protected, "protected_share": self.protected_share,
                "age_buckets": [{"label": label, "machines": n} for label, n in self.age_buckets],
                "storage_total": self.storage_total,
                "storage_by_user": [{"owner": o, "display_name": d, "deduplicated_size": n}
                                    for o, d, n in self.storage_by_user]}


# The fields of a machine's record from the index (Index.fleet_records), in this order.
RECORD_FIELDS = FLEET_COLUMNS


def machine_rows(machines: Iterable[dict[str, Any]], directory: dict[str, str] | None, now: float,
                 policy: Policy, indexed_names: dict[str, str] | None = None) -> list[MachineRow]:
    """Given the index's fleet aggregates, the directory's display names by user name
    (None when the directory could not be asked), the time, the policy and the display
    names the index keeps, return the rows by owner and machine name; an owner is gone
    only when the directory answered without them."""
    return rows_from_records(map(itemgetter(*RECORD_FIELDS), machines), directory, now, policy, indexed_names)


def rows_from_records(records: Iterable[tuple], directory: dict[str, str] | None, now: float,
                      policy: Policy, indexed_names: dict[str, str] | None = None) -> list[MachineRow]:
    """Like machine_rows, from records whose fields are in the order of RECORD_FIELDS."""
    asked = directory is not None
    listed = directory or {}
    # A display name from the directory, else the one the index kept (a leaver's), else the user name.
    names = {user: name for user, name in (indexed_names or {}).items() if name}
    names.update((user, name) for user, name in listed.items() if name)
    backup_age, status, alarming, may_alarm = st.backup_age, st.status, st.alarming, st.MAY_ALARM
    rows = []
    append = rows.append
    for (machine_id, owner, name, hostname, enrolled, last_seen, state, agent_state, agent_reason,
         agent_version, archives, last_backup, original_size, deduplicated_size, failed) in sorted(records,
                                                                                               key=_OWNER_NAME):
        age = backup_age(last_backup, now)
        machine_status = status(state, asked and owner not in listed, age, policy)
        append(MachineRow(machine_id, owner, names.get(owner, owner), name, hostname, state,
                          machine_status, last_backup, age, archives, original_size, deduplicated_size, failed,
                          last_seen, enrolled, agent_version, agent_state, agent_reason,
                          machine_status in may_alarm and alarming(machine_status, enrolled, now, policy)))
    return rows


_OWNER_NAME = itemgetter(RECORD_FIELDS.index("owner"), RECORD_FIELDS.index("name"))


def summarize(rows: list[MachineRow]) -> Summary:
    """Return the summary of the rows (counted by C loops: map, Counter, groupby, compress,
    since a fleet has 100,000 of them)."""
    statuses = list(map(attrgetter("status"), rows))
    by_status = dict.fromkeys(st.BY_SEVERITY, 0)
    by_status.update(Counter(statuses))
    expected = list(compress(rows, map(_EXPECTED.__contains__, statuses)))
    names = dict(zip(map(attrgetter("owner"), rows), map(attrgetter("display_name"), rows)))
    stored: Counter[str] = Counter()
    for owner, machines in groupby(rows, attrgetter("owner")):  # one group per owner when rows come by owner
        stored[owner] += sum(map(attrgetter("deduplicated_size"), machines))
    by_user = sorted(((o, names[o], n) for o, n in stored.items()), key=lambda t: (-t[2], t[0]))
    return Summary(len(rows), by_status, len(expected), by_status[st.OK], age_buckets(expected),
                   sum(stored.values()), by_user)


def summary_values(summary: Summary) -> tuple:
    """Return the summary as a plain tuple (what marshal can carry); Summary(*values) is it again."""
    return tuple(getattr(summary, f.name) for f in fields(Summary))


def merge_summaries(parts: list[Summary]) -> Summary:
    """Return the summary of the rows of all parts, given the summary of each; the
    parts' owners must be distinct (as when the fleet is split by owner)."""
    by_status = Counter(dict.fromkeys(st.BY_SEVERITY, 0))
    ages: Counter[str] = Counter()
    for part in parts:
        by_status.update(part.by_status)
        ages.update(dict(part.age_buckets))
    by_user = sorted((row for part in parts for row in part.storage_by_user), key=lambda t: (-t[2], t[0]))
    return Summary(sum(p.machines for p in parts), dict(by_status), sum(p.expected for p in parts),
                   sum(p.protected for p in parts), [(label, ages[label]) for label in _BUCKET_LABELS],
                   sum(p.storage_total for p in parts), by_user)


def age_buckets(rows: Iterable[MachineRow]) -> list[tuple[str, int]]:
    """Return how many of rows have their newest backup in each age bucket (and never)."""
    ages = list(map(attrgetter("age_seconds"), rows))
    known = list(filter(is_not_none, ages))
    counts = Counter(map(bisect_left, repeat(_UPPERS), known))
    return [(label, counts[n]) for n, (label, _) in enumerate(AGE_BUCKETS)] + [(NEVER_BUCKET, len(ages) - len(known))]


def bucket_of(age: float | None) -> str:
    """Return the label of the age bucket holding age (seconds; None: never)."""
    if age is None:
        return NEVER_BUCKET
    return AGE_BUCKETS[bisect_left(_UPPERS, age)][0]


def by_severity(rows: list[MachineRow]) -> list[list[MachineRow]]:
    """Return the rows in one group per status of st.BY_SEVERITY (most urgent first),
    each in the order of rows; a report made in parts shows each group of every part,
    group after group."""
    groups: dict[str, list[MachineRow]] = {status: [] for status in st.BY_SEVERITY}
    for status, row in zip(map(attrgetter("status"), rows), rows):
        groups[status].append(row)
    return list(groups.values())
