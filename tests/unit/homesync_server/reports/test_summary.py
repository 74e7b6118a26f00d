"""Each machine's summary, kept current by the index as archives are written
(archive_totals, migration 13), is at every step what the archives say, recomputed
here from the archive rows themselves: after any sequence of backup reports,
post-session checks, prunes, edits of the file by another writer and reindexes."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as s

from homesync_server.index import event
from homesync_server.index_store import IndexStore, open_url

MACHINES = ("a" * 16, "b" * 16)
NAMES = [f"arch-{n}" for n in range(6)]
RESULTS = ("success", "warning", "failed", "interrupted")

times = s.floats(min_value=0, max_value=10_000, allow_nan=False).map(lambda t: float(int(t)))
observed = s.one_of(s.none(), times)
flags = s.sampled_from(["", "", "", "outside its session"])
sizes = s.integers(0, 10**9)
machines = s.sampled_from(MACHINES)
names = s.sampled_from(NAMES)

reports = s.tuples(s.just("report"), machines, names, s.sampled_from(RESULTS), times, observed, sizes, sizes, flags)
checks = s.tuples(s.just("check"), machines, names, s.sampled_from(RESULTS), times, observed, sizes, sizes, flags)
seen = s.tuples(s.just("seen"), machines, names, flags)
prunes = s.tuples(s.just("prune"), machines, s.lists(names, max_size=3))
edits = s.tuples(s.just("edit"), machines, names, s.integers(-5000, 5000))
reindexes = s.tuples(s.just("reindex"))
steps = s.lists(s.one_of(reports, checks, seen, prunes, edits, reindexes), max_size=25)


def _archive(name: str, result: str, end: float, seen_at: float | None, original: int, dedup: int,
             flag: str) -> dict:
    return {"name": name, "start": end - 60, "end": end, "files": 1, "original_size": original,
            "compressed_size": original // 2, "deduplicated_size": dedup, "result": result, "error": "",
            "observed": seen_at, "flag": flag}


def _new_index(path) -> IndexStore:
    index = open_url(f"sqlite://{path}")
    index.record_user("joe")
    return index


def _enroll(index: IndexStore) -> None:
    for machine_id in MACHINES:
        index.add_machine({"id": machine_id, "owner": "joe", "name": machine_id[0], "hostname": "h",
                           "public_key": "k", "enrolled": 0.0}, machine_id[0], event("enroll", "joe"))


def _rows(path, machine_id: str) -> list[dict]:
    # The raw rows straight from the file: the summaries the index derives from them are
    # what is being checked, so they are not read through the index itself.
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM archives WHERE machine_id = ?", (machine_id,))]


def _reindexed(index: IndexStore, path) -> IndexStore:
    """Return a new index rebuilt from this one's machines and archives (what reindex writes)."""
    rebuilt = _new_index(path)
    for machine in index.machines():
        archives = _rows(index.path, machine["id"])
        rebuilt.import_machine(dict(machine, last_seen=machine["last_seen"]), machine["name"], archives)
    index.close()
    return rebuilt


def _apply(index: IndexStore, step: tuple, tmp_path, n: int) -> IndexStore:
    kind, *args = step
    if kind == "report":
        machine_id, name, result, end, seen_at, original, dedup, flag = args
        index.add_archive(machine_id, _archive(name, result, end, seen_at, original, dedup, flag),
                          event("backup", "joe", machine_id))
    elif kind == "check":
        machine_id, name, result, end, seen_at, original, dedup, flag = args
        index.observe_archives(machine_id, [dict(_archive(name, result, end, seen_at, original, dedup, flag),
                                                 archive_id=f"id-{name}")], [], None)
    elif kind == "seen":
        machine_id, name, flag = args
        index.observe_archives(machine_id, [], [{"name": name, "archive_id": f"id-{name}", "flag": flag}], None)
    elif kind == "prune":
        machine_id, gone = args
        index.mark_pruning(machine_id, gone)
        index.remove_archives(machine_id, gone, event("prune", "admin", machine_id))
    elif kind == "edit":  # another writer, straight into the file (as an admin with sqlite3 might)
        machine_id, name, delta = args
        with sqlite3.connect(index.path) as db:
            db.execute('UPDATE archives SET "end" = "end" + ? WHERE machine_id = ? AND name = ?',
                       (delta, machine_id, name))
    elif kind == "reindex":
        return _reindexed(index, tmp_path / f"reindexed-{n}.sqlite")
    return index


def _recomputed(rows: list[dict]) -> dict:
    """Return a machine's figures from its archive rows, as the report defines them."""
    counted = [r for r in rows if r["result"] in ("success", "warning") and r["flag"] == ""]
    point = {id(r): min(r["observed"] if r["observed"] is not None else r["end"], r["end"]) for r in counted}
    last = max(point.values(), default=None)
    return {"archives": len(counted), "last_backup": last,
            "original_size": {r["original_size"] for r in counted if point[id(r)] == last} or {None},
            "deduplicated_size": sum(r["deduplicated_size"] for r in rows),
            "failed": sum(r["result"] == "failed" for r in rows)}


def _kept(index: IndexStore) -> dict[str, dict]:
    return {row["id"]: row for row in index.fleet()}


@settings(max_examples=60, deadline=None)
@given(steps)
def test_the_summary_kept_current_is_the_one_recomputed_from_the_archives(tmp_path_factory, steps):
    tmp_path = tmp_path_factory.mktemp("summary")
    index = _new_index(tmp_path / "index.sqlite")
    _enroll(index)
    try:
        for n, step in enumerate(steps):
            index = _apply(index, step, tmp_path, n)
            kept = _kept(index)
            for machine_id in MACHINES:
                expected, row = _recomputed(_rows(index.path, machine_id)), kept[machine_id]
                assert row["original_size"] in expected.pop("original_size"), step
                assert {k: row[k] for k in expected} == expected, step
    finally:
        index.close()
