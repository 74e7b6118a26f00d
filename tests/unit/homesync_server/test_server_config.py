"""server.toml is checked with the agent's schema: the same line for the same mistake,
every problem of the file in one error."""

from __future__ import annotations

import re

import pytest

from homesync.errors import ConfigError
from homesync_server import config as server_config

DEFAULT = server_config.render_default("127.0.0.1:2222")


def _load(tmp_path, text: str):
    layout = server_config.Layout(tmp_path)
    layout.config_file.write_text(text)
    return server_config.load(layout)


def test_the_defaults_load(tmp_path):
    assert _load(tmp_path, DEFAULT).limits == server_config.Limits()


def test_every_problem_is_named_in_one_line_in_the_agents_words(tmp_path):
    text = DEFAULT.replace('# urls = ["ldap://127.0.0.1:389"]', 'urls = "ldap://127.0.0.1:389"') + (
        "\n[drill]\nmax_bytes = -1\nshred = true\n")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    line = str(caught.value)
    assert "\n" not in line
    assert "[identity] urls must be a list of strings" in line
    assert "[drill] max_bytes must be a whole number (0 or more)" in line
    assert "[drill] unknown key 'shred'" in line


@pytest.mark.parametrize("value, complaint", [
    ('"8"', "[server] max_sessions must be a whole number (0 or more)"),
    ("true", "[server] max_sessions must be a whole number (0 or more)"),
    ("0", "[server] max_sessions must be positive"),
    ("2.5", "[server] max_sessions must be a whole number (0 or more)"),
])
def test_a_limit_of_the_wrong_kind_or_zero_is_refused(tmp_path, value, complaint):
    text = DEFAULT.replace("# max_sessions = 128", f"max_sessions = {value}")
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        _load(tmp_path, text)


def test_the_index_pool_size_is_read_and_a_pool_of_none_refused(tmp_path):
    assert _load(tmp_path, DEFAULT).index.pool_size == 16
    assert _load(tmp_path, DEFAULT.replace("# pool_size = 16", "pool_size = 40").replace(
        "# [index]", "[index]")).index.pool_size == 40
    with pytest.raises(ConfigError, match=re.escape("[index] pool_size must be 1 or more (connections)")):
        _load(tmp_path, DEFAULT.replace("# pool_size = 16", "pool_size = 0").replace("# [index]", "[index]"))
