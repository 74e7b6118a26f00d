"""borg's pattern styles, as the watcher applies them to paths relative to the source."""

from __future__ import annotations

import pytest

from homesync.agent.patterns import compile_pattern
from homesync.errors import ConfigError

CASES = [
    # pattern, path, excluded
    ("sh:.cache", ".cache", True),
    ("sh:.cache", ".cache/a/b", True),
    ("sh:.cache", "Docs/.cache", False),
    ("sh:**/.cache", "Docs/.cache/x", True),
    ("sh:**/.cache", ".cache", True),
    ("sh:*.iso", "big.iso", True),
    ("sh:*.iso", "Downloads/big.iso", False),
    ("sh:**/*.iso", "Downloads/big.iso", True),
    ("sh:Videos/raw/", "Videos/raw", False),  # trailing slash: contents only
    ("sh:Videos/raw/", "Videos/raw/a.mov", True),
    ("sh:file[0-9].txt", "file7.txt", True),
    ("sh:file[!0-9].txt", "file7.txt", False),
    ("sh:a?c", "abc", True),
    ("sh:a?c", "a/c", False),
    ("Docs/a", "Docs/a/f", True),  # fm: by default
    ("fm:*.tmp", "deep/dir/x.tmp", True),  # fm: "*" crosses "/"
    ("fm:Docs/*", "Docs", False),
    ("pp:Docs", "Docs", True),
    ("pp:Docs", "Docs/a/b", True),
    ("pp:Docs", "Docs2", False),
    ("pf:Docs/a", "Docs/a", True),
    ("pf:Docs/a", "Docs/a/f", False),
    ("re:\\.o$", "build/x.o", True),
    ("re:\\.o$", "build/x.oo", False),
]


@pytest.mark.parametrize("pattern, path, excluded", CASES)
def test_pattern(pattern, path, excluded):
    assert compile_pattern(pattern)(path) is excluded


def test_unknown_style_and_bad_regex_are_config_errors():
    with pytest.raises(ConfigError, match="unknown borg pattern style 'xx'"):
        compile_pattern("xx:foo")
    with pytest.raises(ConfigError, match="invalid pattern"):
        compile_pattern("re:(")
