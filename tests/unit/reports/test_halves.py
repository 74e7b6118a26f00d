"""Work split in two processes (homesync_server.reports.halves) gives exactly what it
gives in one: every report format and the metrics, on the small real fleet with the
threshold lowered so that it forks; a failing child's part is done by the parent; and
nothing forks where other threads run."""

from __future__ import annotations

import os
import threading
import time

import pytest

from homesync_server import metrics
from homesync_server.actions import report
from homesync_server.reports import halves


def _everything(layout, now: float) -> dict[str, str]:
    sources = report.Sources.open(layout)
    try:
        made = report.make(sources, now)
        rendered = {fmt: render(made) for fmt, render in report.FORMATS.items()}
        rendered["metrics"] = report.metrics_text(sources, now)
        return rendered
    finally:
        sources.close()


def test_every_format_is_the_same_whether_or_not_the_work_is_split(fleet_layout, monkeypatch):
    now = time.time()
    alone = _everything(fleet_layout, now)
    forks = []
    real_fork = os.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    monkeypatch.setattr(os, "fork", counting_fork)
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: the work is never split here")
    assert _everything(fleet_layout, now) == alone
    # the report's context, the machines of table, csv and html (JSON is one orjson call), the metrics
    assert len(forks) == 5


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
    first, second = halves.in_halves(lambda half: (half, os.getpid() != parent, halves.split(big, half)), 10)
    assert first == (0, False, big[:10_000])
    assert second[0] == 1 and list(second[2]) == big[10_000:]
    assert second[1] == (len(os.sched_getaffinity(0)) > 1)  # made in the child when it could be


def test_no_fork_while_other_threads_run(monkeypatch):
    monkeypatch.setattr(halves, "MIN_ITEMS", 1)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked beside another thread"))
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert halves.in_halves(lambda half: half, 10) == (0, 1)
    finally:
        stop.set()
        thread.join()


def test_below_the_threshold_nothing_forks(monkeypatch):
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked for a small job"))
    assert halves.in_halves(lambda half: half * 2, halves.MIN_ITEMS - 1) == (0, 2)
    assert metrics.render([], report.fleet.summarize([]), 0.0).endswith("\n")
