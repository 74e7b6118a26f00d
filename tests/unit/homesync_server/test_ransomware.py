"""The mass-change signal: a newest archive that wrote an unusual share of its data anew."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homesync_server.ransomware import MIN_CHANGED_BYTES, assess, change_share

MB = 1 << 20


def _archive(name: str, original: int, new: int, result: str = "success") -> dict:
    return {"name": name, "original_size": original, "deduplicated_size": new, "result": result}


def test_a_home_rewritten_after_quiet_backups_is_flagged():
    archives = [_archive("full", 100 * MB, 60 * MB), _archive("b", 100 * MB, 2 * MB),
                _archive("c", 101 * MB, 1 * MB), _archive("encrypted", 100 * MB, 99 * MB)]
    signal = assess(archives, share=0.5, factor=4)
    assert signal is not None and signal.archive == "encrypted"
    assert signal.share == 0.99 and 0.01 < signal.baseline < 0.02


def test_the_seeding_full_backup_and_a_lone_second_one_are_no_history():
    assert assess([_archive("full", 100 * MB, 90 * MB)], 0.5, 4) is None
    assert assess([_archive("full", 100 * MB, 90 * MB), _archive("b", 100 * MB, 90 * MB)], 0.5, 4) is None


def test_a_machine_that_always_changes_a_lot_is_not_flagged():
    archives = [_archive("full", 100 * MB, 90 * MB)] + [_archive(f"vm{i}", 100 * MB, 40 * MB) for i in range(4)]
    assert assess(archives + [_archive("new", 100 * MB, 70 * MB)], 0.5, 4) is None


def test_failed_backups_and_tiny_changes_do_not_count():
    quiet = [_archive("full", 100 * MB, 60 * MB), _archive("b", 100 * MB, 1 * MB)]
    assert assess(quiet + [_archive("x", 100 * MB, 99 * MB, "failed")], 0.5, 4) is None
    assert assess(quiet + [_archive("tiny", MB // 2, MB // 2 - 1)], 0.5, 4) is None


@given(st.lists(st.tuples(st.integers(1, 10**12), st.integers(0, 10**12)), min_size=3, max_size=20),
       st.floats(0.05, 1.0), st.floats(1.0, 20.0))
def test_a_signal_always_meets_both_thresholds(sizes, share, factor):
    archives = [_archive(f"a{i}", o, min(n, o)) for i, (o, n) in enumerate(sizes)]
    signal = assess(archives, share, factor)
    if signal is not None:
        newest = archives[-1]
        assert signal.archive == newest["name"] and signal.share == change_share(newest)
        assert signal.share >= share and signal.share >= factor * signal.baseline
        assert newest["deduplicated_size"] >= MIN_CHANGED_BYTES
