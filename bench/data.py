"""The benchmark's data: a generated home directory (tests/support/trees.make_home),
its day-of-work mutations, and a tree of many small files; all owned by the
unprivileged user who runs the clients, and read once so every contender starts
from a warm page cache."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench.measure import NOBODY
from tests.support.processes import chown_tree
from tests.support import trees
from tests.support.trees import make_home, mutate_home

_WORDS = (b"backup restore laptop server archive report budget meeting notes draft final review "
          b"project school network policy holiday photo family invoice").split()


@dataclass
class DataSet:
    """A generated source tree and what it holds."""

    path: Path
    files: int
    bytes: int
    backed_up_files: int
    backed_up_bytes: int

    def as_json(self) -> dict:
        return {"path": str(self.path), "files": self.files, "bytes": self.bytes,
                "backed_up_files": self.backed_up_files, "backed_up_bytes": self.backed_up_bytes}


def generated_home(path: Path, seed: int, files: int, total_bytes: int) -> DataSet:
    """Write a realistic home of about `files` files and `total_bytes` bytes."""
    with _distinct_noise():
        stats = make_home(path, seed, files=files, total_bytes=total_bytes)
    chown_tree(path)
    warm(path)
    return DataSet(path, stats.files, stats.bytes, stats.files - stats.excluded_files,
                   stats.bytes - stats.excluded_bytes)


def small_files(path: Path, seed: int, count: int, per_dir: int = 100) -> DataSet:
    """Write `count` files of 1–8 KB (half text, half incompressible) in directories of
    `per_dir` files, two levels deep."""
    rng = random.Random(seed)
    total = 0
    for i in range(count):
        folder = path / f"d{i // (per_dir * 50):03d}" / f"s{(i // per_dir) % 50:02d}"
        if i % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 8192)
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = b" ".join(rng.choices(_WORDS, k=size // 6 + 1))[:size]
        (folder / f"file-{i:06d}.txt").write_bytes(data)
        total += size
    chown_tree(path)
    warm(path)
    return DataSet(path, count, total, count, total)


def mutate(path: Path, seed: int) -> str:
    """Apply a day of work to a generated home; give new entries to the unprivileged user
    (only those: a chown changes ctime, which would make borg re-read unchanged files)."""
    with _distinct_noise():
        done = mutate_home(path, seed)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                if os.lstat(full).st_uid != NOBODY:
                    os.lchown(full, NOBODY, NOBODY)
    warm(path)
    return done


def warm(path: Path) -> None:
    """Read every file once, so the contenders all read from the page cache."""
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    while f.read(1 << 20):
                        pass


def _overlapping_noise() -> bool:
    """Return whether trees._Home.noise() gives overlapping streams: its AES-CTR nonce is
    the call counter, and CTR counts blocks up from there, so call n+1 returns call n's
    bytes shifted by 16 — pictures, videos and ISOs that borg partly deduplicates,
    depending on each repository's chunker seed."""
    home = trees._Home(Path("/nonexistent"), 0)
    first, second = home.noise(64), home.noise(64)
    return first[16:32] == second[:16]


def _noise(self, size: int) -> bytes:
    """Incompressible bytes from a stream of their own (2**64 blocks apart per call)."""
    self.counter += 1
    nonce = (self.counter << 64).to_bytes(16, "big")
    return Cipher(algorithms.AES(self.key), modes.CTR(nonce)).encryptor().update(bytes(size))


@contextmanager
def _distinct_noise():
    """While generating, give every noise() call its own stream if trees.py does not yet
    (the same files, sizes and structure; only the random bytes differ)."""
    if not _overlapping_noise():
        yield
        return
    original = trees._Home.noise
    trees._Home.noise = _noise
    try:
        yield
    finally:
        trees._Home.noise = original
