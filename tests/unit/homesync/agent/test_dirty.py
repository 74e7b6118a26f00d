"""The dirty set: bounded counting, clearing up to a job's start, thread safety."""

from __future__ import annotations

import threading

from homesync.agent.dirty import DirtySet
from homesync.agent.policy import DirtyState


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_and_times():
    clock = Clock()
    dirty = DirtySet(clock=clock)
    assert dirty.state() == DirtyState()
    dirty.add("/h/a")
    clock.now = 1005
    dirty.add("/h/b")
    assert dirty.state() == DirtyState(count=2, first_change=1000, last_change=1005)
    assert dirty.sample() == ["/h/a", "/h/b"]


def test_a_burst_is_a_count_not_a_list():
    dirty = DirtySet(clock=Clock(), sample_size=50)
    for i in range(100_000):
        dirty.add(f"/h/f{i}", when=1000 + i / 1000)
    assert dirty.state().count == 100_000
    assert len(dirty.sample()) == 50 and dirty.sample()[-1] == "/h/f99999"
    assert len(dirty._buckets) <= 256


def test_clear_up_to_keeps_changes_after_the_job_started():
    dirty = DirtySet(clock=Clock())
    dirty.add("/h/old", when=1000)
    dirty.add("/h/new", when=1010)
    dirty.clear_up_to(1005)
    assert dirty.state() == DirtyState(count=1, first_change=1010, last_change=1010)
    assert dirty.sample() == ["/h/new"]
    dirty.clear_up_to(1011)
    assert dirty.state() == DirtyState()


def test_a_bucket_straddling_the_start_is_kept():
    dirty = DirtySet(clock=Clock(), bucket_width=1.0)
    dirty.add("/h/a", when=1000.0)
    dirty.add("/h/b", when=1000.6)
    dirty.clear_up_to(1000.3)
    assert dirty.state().count == 2  # conservative: may back up twice, never misses


def test_old_buckets_merge_and_are_still_cleared():
    dirty = DirtySet(clock=Clock(), max_buckets=4)
    for t in range(10):
        dirty.add(f"/h/{t}", when=1000 + 10 * t)
    assert dirty.state().count == 10 and len(dirty._buckets) == 4
    dirty.clear_up_to(1085)
    assert dirty.state() == DirtyState(count=1, first_change=1090, last_change=1090)


def test_restart_is_possibly_dirty_until_a_later_job():
    clock = Clock()
    dirty = DirtySet(possibly_dirty=True, clock=clock)
    assert dirty.state() == DirtyState(possibly_dirty=True) and dirty.state().dirty
    dirty.clear_up_to(999)
    assert dirty.state().possibly_dirty
    dirty.clear_up_to(1001)
    assert not dirty.state().dirty


def test_on_dirty_fires_on_the_clean_to_dirty_transition_only():
    calls = []
    dirty = DirtySet(clock=Clock(), on_dirty=lambda: calls.append(1))
    dirty.add("/h/a")
    dirty.add("/h/b")
    assert calls == [1]
    dirty.clear_up_to(2000)
    dirty.mark_possibly_dirty("lost events")
    dirty.add("/h/c")
    assert calls == [1, 1]


def test_threads_adding_at_once():
    dirty = DirtySet()
    threads = [threading.Thread(target=lambda: [dirty.add(f"/h/{i}") for i in range(5000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dirty.state().count == 20_000
