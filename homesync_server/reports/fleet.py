"""The fleet part of the report: every machine with its status, held column by column
(Fleet), and the summary (share protected within policy, ages of the recovery points,
storage per user). Pure: it gets the index's records, what the directory says, the
time and the policy.

Columns, not an object per machine: a fleet has 100,000 machines and every renderer
writes its cells column by column, so the fleet is made and read with C loops (zip,
map) and leaves the garbage collector few objects to walk. Iterating a Fleet still
gives one MachineRow per machine, for whoever wants rows.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, make_dataclass
from itertools import accumulate, compress, repeat
from operator import itemgetter, ne, sub
from typing import Any, Iterable, Iterator

from homesync_server.index import FLEET_COLUMNS
from homesync_server.reports import columns
from homesync_server.reports import status as st
from homesync_server.reports.status import Policy

DAY = 86400.0
# Recovery-point age buckets: (label, upper bound in seconds, inclusive).
AGE_BUCKETS = (("< 1 h", 3600.0), ("1 h – 1 d", DAY), ("1–2 d", 2 * DAY), ("2–7 d", 7 * DAY),
               ("1–4 weeks", 28 * DAY), ("> 4 weeks", float("inf")))
NEVER_BUCKET = "never"
_UPPERS = [upper for _, upper in AGE_BUCKETS]
_EXPECTED = frozenset(st.EXPECTED)


def _as_dict(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FIELDS}


# One machine as the report shows it: a slotted dataclass with the fields of
# columns.FIELDS, in that order (the JSON report's order).
MachineRow = make_dataclass("MachineRow", [(f.name, f.type) for f in columns.FIELDS], slots=True,
                            namespace={"as_dict": _as_dict, "__doc__": "One machine as the report shows it."})
FIELDS = tuple(f.name for f in columns.FIELDS)
# The report's name of each field the index gives (Index.fleet_columns, FLEET_COLUMNS).
RECORD_NAMES = {"id": "machine_id", "name": "machine"}


class Fleet:
    """Machines as columns: fleet[field] is the list of every machine's value of that
    field (FIELDS), machines by owner, then name (or in the order most_urgent_first
    gives)."""

    __slots__ = ("_columns", "_size", "_source", "_order")

    def __init__(self, columns: dict[str, list], source: "Fleet | None" = None,
                 order: list[int] | None = None) -> None:
        self._columns = columns
        self._source, self._order = source, order
        self._size = len(order) if order is not None else len(next(iter(columns.values()), ()))

    @classmethod
    def of(cls, rows: Iterable[MachineRow]) -> "Fleet":
        """Return the fleet of these rows, in their order."""
        rows = list(rows)
        return cls({name: [getattr(row, name) for row in rows] for name in FIELDS})

    def __getitem__(self, field: str) -> list:
        values = self._columns.get(field)
        if values is None and self._source is not None:  # a reordered fleet makes a column when asked
            values = self._columns[field] = list(map(self._source[field].__getitem__, self._order))
        if values is None:
            raise KeyError(field)
        return values

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[MachineRow]:
        return map(MachineRow, *(self[name] for name in FIELDS))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fleet) and all(self[name] == other[name] for name in FIELDS)

    def most_urgent_first(self) -> "Fleet":
        """Return the machines by status in the order of st.BY_SEVERITY (most urgent
        first), in the order of this fleet within a status."""
        ranks = list(map(_SEVERITY.__getitem__, self["status"]))
        return Fleet({}, self, sorted(range(self._size), key=ranks.__getitem__))


_SEVERITY = {status: rank for rank, status in enumerate(st.BY_SEVERITY)}


def fleet(records: dict[str, list], directory: dict[str, str] | None, now: float, policy: Policy,
          indexed_names: dict[str, str] | None = None) -> Fleet:
    """Given the index's records column by column (Index.fleet_columns: by owner and
    name), the directory's display names by user name (None when the directory could not
    be asked), the time, the policy and the display names the index keeps, return the
    fleet; an owner is gone only when the directory answered without them."""
    columns = {RECORD_NAMES.get(name, name): values for name, values in records.items()}
    owners = columns["owner"]
    # A display name from the directory, else the one the index kept (a leaver's), else the user name.
    names = {user: name for user, name in (indexed_names or {}).items() if name}
    names.update((user, name) for user, name in (directory or {}).items() if name)
    columns["display_name"] = list(map(names.get, owners, owners))
    gone = list(map(directory.__contains__, owners)) if directory is not None else None
    gone = [not listed for listed in gone] if gone is not None else repeat(False)
    ages = columns["age_seconds"] = list(map(st.backup_age, columns["last_backup"], repeat(now)))
    statuses = columns["status"] = list(map(st.status, columns["state"], gone, ages, repeat(policy)))
    columns["alarming"] = list(map(st.alarming, statuses, columns["enrolled"], repeat(now), repeat(policy)))
    return Fleet({name: columns[name] for name in FIELDS})


def machine_rows(machines: Iterable[dict[str, Any]], directory: dict[str, str] | None, now: float,
                 policy: Policy, indexed_names: dict[str, str] | None = None) -> Fleet:
    """Like fleet, from the index's records as dicts (Index.fleet), in any order."""
    machines = sorted(machines, key=itemgetter("owner", "name"))
    return fleet({name: [m.get(name, _UNSET[name]) if name in _UNSET else m[name] for m in machines]
                  for name in FLEET_COLUMNS}, directory, now, policy, indexed_names)


# What a record made by hand may leave out: the fleet-policy fields (a machine that never asked).
_UNSET = {"policy_version": 0, "policy_contact": None}


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


def summarize(machines: Fleet | Iterable[MachineRow]) -> Summary:
    """Return the summary of the fleet (of rows, made a fleet)."""
    machines = machines if isinstance(machines, Fleet) else Fleet.of(machines)
    statuses = machines["status"]
    by_status = dict.fromkeys(st.BY_SEVERITY, 0)
    by_status.update(Counter(statuses))
    expected = list(map(_EXPECTED.__contains__, statuses))
    names = dict(zip(machines["owner"], machines["display_name"]))
    stored = _stored_by_owner(machines["owner"], machines["deduplicated_size"])
    # by bytes, most first, then by owner: a stable sort of the owners in order
    by_user = sorted([(o, names[o], n) for o, n in sorted(stored.items())], key=itemgetter(2), reverse=True)
    return Summary(len(machines), by_status, sum(expected), by_status[st.OK],
                   age_buckets(compress(machines["age_seconds"], expected)), sum(stored.values()), by_user)


def _stored_by_owner(owners: list[str], sizes: list[int]) -> Counter[str]:
    """Return the bytes of each owner's machines, summed run by run of machines of one
    owner (one run per owner when the fleet comes by owner) from running totals: C
    loops, no Python per machine."""
    if not owners:
        return Counter()
    starts = [0, *compress(range(1, len(owners)), map(ne, owners[1:], owners))]
    totals = [0, *accumulate(sizes)]
    ends = map(totals.__getitem__, [*starts[1:], len(owners)])
    stored: Counter[str] = Counter()
    for owner, total in zip(map(owners.__getitem__, starts), map(sub, ends, map(totals.__getitem__, starts))):
        stored[owner] += total
    return stored


def age_buckets(ages: Iterable[float | None]) -> list[tuple[str, int]]:
    """Return how many of the ages (seconds; None: never) fall in each age bucket (and never)."""
    ages = list(ages)
    known = [age for age in ages if age is not None]
    counts = Counter(map(bisect_left, repeat(_UPPERS), known))
    return [(label, counts[n]) for n, (label, _) in enumerate(AGE_BUCKETS)] + [(NEVER_BUCKET, len(ages) - len(known))]


def bucket_of(age: float | None) -> str:
    """Return the label of the age bucket holding age (seconds; None: never)."""
    if age is None:
        return NEVER_BUCKET
    return AGE_BUCKETS[bisect_left(_UPPERS, age)][0]
