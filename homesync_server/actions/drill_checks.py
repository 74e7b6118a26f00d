"""What a drill compares: the restored tree's regular files counted the way `borg create`
counts them (one per inode, so hard links once; original size = bytes of those files),
and a sample of restored files hashed against the SHA-256 borg lists for them.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from homesync.tally import Tally, walk

SAMPLE_FILES = 20


def scratch_tally(root: Path) -> Tally:
    """Given a directory an archive was extracted into, return its tally."""
    return walk(root)


def compare_tally(tally: Tally, expected: dict, where: str) -> list[str]:
    """Return a line for each of file count and size that differs from what was
    reported at backup time (`files`, `original_size`)."""
    problems = []
    if tally.files != expected["files"]:
        gap = expected["files"] - tally.files
        what = f"{gap} missing" if gap > 0 else f"{-gap} more than reported"
        problems.append(f"{where}: {expected['files']} files were reported at backup time, "
                        f"the restore holds {tally.files} ({what})")
    if tally.bytes != expected["original_size"]:
        problems.append(f"{where}: {expected['original_size']} bytes were reported at backup time, "
                        f"the restore holds {tally.bytes}")
    return problems


def sample_files(paths: list[str], n: int = SAMPLE_FILES) -> list[str]:
    """Return up to n of paths, chosen at random."""
    return random.sample(paths, min(n, len(paths)))


def compare_hashes(root: Path, sample: list[str], listed: list[dict], where: str) -> tuple[int, list[str]]:
    """Given sampled relative paths restored under root and borg's listing of them with
    their sha256, return how many were compared and a line for each that differs or
    that borg does not list. Further names of a hard link (no hash listed) are skipped."""
    by_path = {item["path"]: item for item in listed}
    compared, problems = 0, []
    for path in sample:
        item = by_path.get(path)
        if item is None:
            problems.append(f"{where}: {path!r} was restored but borg does not list it")
            continue
        if item.get("source") or not item.get("sha256"):
            continue
        with open(root / path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        compared += 1
        if digest != item["sha256"]:
            problems.append(f"{where}: {path!r} restored with SHA-256 {digest[:16]}…, "
                            f"borg lists {item['sha256'][:16]}…")
    return compared, problems
