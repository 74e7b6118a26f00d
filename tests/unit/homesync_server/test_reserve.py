"""The reserve beside the repositories: kept at its size, given up and put back by
reclaim, which deletes only the segments after the repository's last transaction."""

from __future__ import annotations

from homesync_server import reserve


def _repository(root, segments, transaction):
    repo = root / "0123456789abcdef"
    for number in segments:
        path = repo / "data" / str(number // 1000) / str(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"s" * 100)
    (repo / f"index.{transaction}").write_bytes(b"index")
    return repo


def test_reclaim_deletes_only_the_segments_after_the_last_transaction(tmp_path):
    repo = _repository(tmp_path, [1, 2, 3, 4, 5], transaction=3)
    reserve.keep(tmp_path)
    assert reserve.reclaim(repo) == 200
    left = sorted(int(p.name) for p in (repo / "data").glob("*/*"))
    assert left == [1, 2, 3]
    assert (tmp_path / reserve.RESERVE_NAME).stat().st_size == reserve.RESERVE_BYTES  # put back
    assert not (repo / "lock.exclusive").exists() and not (repo / "lock.roster").exists()


def test_reclaim_does_nothing_without_a_transaction_or_unfinished_segments(tmp_path):
    repo = _repository(tmp_path, [1, 2], transaction=2)
    assert reserve.reclaim(repo) == 0
    (repo / "index.2").unlink()
    assert reserve.reclaim(repo) == 0
    assert sorted(int(p.name) for p in (repo / "data").glob("*/*")) == [1, 2]
