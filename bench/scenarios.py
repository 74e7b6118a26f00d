"""The scenarios, each run for every contender on the same data, the contenders taking
turns in a rotating order so that none always goes first: full backup, no-change
backup, backup after a day of work, restore, and a no-change backup of many small
files. Each returns {contender: summary} with medians over the runs. Every
measurement starts with the disk quiet (os.sync): the previous one's writes, flushed
later by the kernel, would otherwise land in whichever measurement comes next."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Protocol, Sequence

from bench import data, measure
from bench.contenders import Destination
from bench.measure import Measurement

logger = logging.getLogger("bench")


class Contender(Protocol):
    name: str
    title: str

    def fresh(self, source: Path, label: str) -> Destination: ...
    def backup(self, dest: Destination) -> Measurement: ...
    def restore(self, dest: Destination, into: Path) -> Measurement: ...
    def discard(self, dest: Destination) -> None: ...


def _turns(contenders: Sequence[Contender], run: int) -> list[Contender]:
    k = run % len(contenders)
    return list(contenders[k:]) + list(contenders[:k])


def _stored(dest: Destination) -> dict:
    files, apparent, allocated = measure.tree_bytes(dest.server_path)
    return {"files": files, "bytes": apparent, "disk_bytes": allocated}


def _log(scenario: str, run: int, contender: Contender, m: Measurement) -> None:
    logger.info("%-18s run %d  %-14s %7.2f s wall  %6.2f s client CPU  %6.2f s server CPU", scenario, run + 1,
                contender.title, m.wall, m.client_cpu, m.server_cpu)


def full_backup(contenders: Sequence[Contender], source: Path, runs: int, label: str = "full"
                ) -> tuple[dict, dict[str, Destination]]:
    """Back up source into a new, empty destination `runs` times; keep the last
    destination of each contender for the scenarios that continue from it."""
    measured: dict[str, list[Measurement]] = {c.name: [] for c in contenders}
    stored: dict[str, dict] = {}
    kept: dict[str, Destination] = {}
    for run in range(runs):
        for contender in _turns(contenders, run):
            dest = contender.fresh(source, f"{label}-{run + 1}")
            os.sync()
            m = contender.backup(dest)
            _log(label, run, contender, m)
            measured[contender.name].append(m)
            stored[contender.name] = _stored(dest)
            if contender.name in kept:
                contender.discard(kept[contender.name])
            kept[contender.name] = dest
    counts = {name: ms[-1].items for name, ms in measured.items() if ms and ms[-1].items is not None}
    if len(set(counts.values())) > 1:
        logger.warning("the archives do not hold the same number of files: %s", counts)
    return {name: dict(measure.summarize(ms), stored=stored[name]) for name, ms in measured.items()}, kept


def again(contenders: Sequence[Contender], dests: dict[str, Destination], runs: int, label: str,
          before_each_run=None) -> dict:
    """Back up into the existing destinations `runs` times (after before_each_run(run),
    if given: the data changes once, then every contender backs up the same state)."""
    measured: dict[str, list[Measurement]] = {c.name: [] for c in contenders}
    for run in range(runs):
        if before_each_run:
            before_each_run(run)
        for contender in _turns(contenders, run):
            os.sync()
            m = contender.backup(dests[contender.name])
            _log(label, run, contender, m)
            measured[contender.name].append(m)
    return {name: dict(measure.summarize(ms), stored=_stored(dests[name])) for name, ms in measured.items()}


def day_of_work(source: Path, seed: int):
    """Return a before_each_run hook that applies one day of changes to the home."""
    def change(run: int) -> None:
        logger.info("mutating the home: %s", data.mutate(source, seed + run))
    return change


def restore(contenders: Sequence[Contender], dests: dict[str, Destination], runs: int, into: Path,
            label: str = "restore") -> dict:
    """Restore each contender's latest backup into a new, empty directory `runs` times;
    check that every contender brought back the same number of files and bytes."""
    measured: dict[str, list[Measurement]] = {c.name: [] for c in contenders}
    restored: dict[str, dict] = {}
    for run in range(runs):
        for contender in _turns(contenders, run):
            target = into / f"{contender.name}-{run + 1}"
            target.mkdir(parents=True)
            os.chown(target, measure.NOBODY, measure.NOBODY)
            os.sync()
            m = contender.restore(dests[contender.name], target)
            _log(label, run, contender, m)
            measured[contender.name].append(m)
            files, apparent, _ = measure.tree_bytes(target)
            restored[contender.name] = {"files": files, "bytes": apparent}
            shutil.rmtree(target)
    counts = {(r["files"], r["bytes"]) for r in restored.values()}
    if len(counts) != 1:
        logger.warning("the restores differ: %s", restored)
    return {name: dict(measure.summarize(ms), restored=restored[name]) for name, ms in measured.items()}
