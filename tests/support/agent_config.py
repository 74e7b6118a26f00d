"""An enrolled computer's config.toml for unit tests, and the Paths that hold it."""

from __future__ import annotations

from pathlib import Path

from homesync import config

# [server] after its address: the rest of an enrolled computer's identity.
IDENTITY = """fingerprint = "SHA256:x"
user = "joe"
[machine]
id = "0123456789abcdef"
name = "Joe's Thinkpad"
"""
BASE = '[server]\naddress = "127.0.0.1:2222"\n' + IDENTITY


def config_paths(tmp_path: Path, text: str) -> config.Paths:
    """Return Paths under tmp_path whose config.toml holds text."""
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir(exist_ok=True)
    paths.config_file.write_text(text)
    return paths
