"""A report made in two parts, the second in another process (actions.report.make_in_parts,
reports/halves.py), is exactly the report made whole: every format and the metrics, on
the small real fleet with the threshold lowered so that it forks; the parts split the
fleet by owner; a failing child's part is done by the parent; nothing forks where
other threads run."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest

from homesync_server.actions import report
from homesync_server.reports import halves


def _every_format(layout, now: float, in_parts: bool) -> dict[str, str]:
    sources = report.Sources.open(layout)
    try:
        if not in_parts:
            made = report.make(sources, now)
            rendered = {fmt: renderer.render(made) for fmt, renderer in report.FORMATS.items()}
            rendered["metrics"] = report.metrics_text(sources, now)
            return rendered
        rendered = {fmt: renderer.render(*report.make_in_parts(sources, now, renderer.section))
                    for fmt, renderer in report.FORMATS.items()}
        rendered["metrics"] = report.metrics_text(sources, now)
        return rendered
    finally:
        sources.close()


def test_every_format_is_the_same_made_whole_or_in_parts(fleet_layout, monkeypatch):
    now = time.time()
    whole = _every_format(fleet_layout, now, in_parts=False)
    forks = []
    real_fork = os.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    monkeypatch.setattr(os, "fork", counting_fork)
    in_parts = _every_format(fleet_layout, now, in_parts=True)
    for fmt in whole:
        assert in_parts[fmt] == whole[fmt], fmt
    # one fork per format and for the metrics, where a second CPU lets it happen
    assert len(forks) == (5 if len(os.sched_getaffinity(0)) > 1 else 0)


def test_the_parts_split_the_fleet_by_owner(fleet_layout, monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    sources = report.Sources.open(fleet_layout)
    try:
        middle = sources.index.middle_owner()
        below, rest = sources.index.fleet_records(None, (None, middle)), sources.index.fleet_records(None, (middle, None))
        assert below and rest and len(below) + len(rest) == len(sources.index.fleet_records())
        assert max(r[1] for r in below) < middle == min(r[1] for r in rest)
        made, sections = report.make_in_parts(sources, time.time(), lambda rows, now: [r.owner for r in rows])
        assert made.machines == [] and [sorted(set(s)) for s in sections] == [["ann"], ["joe", "leaver"]]
    finally:
        sources.close()


def test_a_failing_child_leaves_its_part_to_the_parent(monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    parent = os.getpid()

    def there():
        if os.getpid() != parent:
            raise RuntimeError("only in the child")
        return "done by the parent"

    assert halves.at_once(lambda: "here", there, 10) == ("here", "done by the parent")


def test_results_come_back_whole_through_the_pipe(monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    big = ["x" * 1000 + str(n) for n in range(20_000)]  # 20 MB: more than a pipe's buffer
    parent = os.getpid()
    first, second = halves.at_once(lambda: (0, os.getpid() != parent, big[:10_000]),
                                   lambda: (1, os.getpid() != parent, big[10_000:]), 10)
    assert first == (0, False, big[:10_000])
    assert second[0] == 1 and second[2] == big[10_000:]
    assert second[1] == (len(os.sched_getaffinity(0)) > 1)  # made in the child when it could be


def test_the_child_reads_the_index_read_only_and_sigchld_ignored_changes_nothing(fleet_layout, monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    sources = report.Sources.open(fleet_layout)
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel: no exit status
    try:
        def in_child():
            index = sources.index.in_this_process()
            assert index is not sources.index and index is sources.index.in_this_process()
            try:
                index.record_user("mallory")
            except sqlite3.OperationalError as e:
                return ["read-only", str(e), len(index.fleet_records())]
            return ["writable"]

        here, there = halves.at_once(lambda: sources.index.in_this_process() is sources.index, in_child, 1)
        assert here is True
        assert there[0] == "read-only" and "readonly" in there[1] and there[2] == 6
    finally:
        signal.signal(signal.SIGCHLD, previous)
        sources.close()


def test_a_child_that_dies_before_writing_all_is_redone_here(monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    parent = os.getpid()

    def dies_half_way():
        if os.getpid() != parent:
            os.write(2, b"")  # nothing written to the pipe
            os._exit(0)  # exits "successfully" without a result
        return "redone here"

    assert halves.at_once(lambda: "here", dies_half_way, 10) == ("here", "redone here")


def test_no_fork_while_other_threads_run(monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked beside another thread"))
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert halves.at_once(lambda: 0, lambda: 1, 10) == (0, 1)
    finally:
        stop.set()
        thread.join()


def test_below_the_threshold_nothing_forks(monkeypatch):
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked for a small job"))
    assert halves.at_once(lambda: 0, lambda: 2, halves.MIN_ITEMS - 1) == (0, 2)
