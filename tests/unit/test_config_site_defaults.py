"""Site-wide agent defaults in /etc/homesync/agent.toml (the homesync package's conffile):
a user's config.toml wins key by key; the shipped file, all comments, changes nothing;
identity sections there are refused, problems named with the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from homesync import config
from homesync.errors import ConfigError
from tests.unit.test_config_agent import BASE

SHIPPED = Path(__file__).parents[2] / "packaging" / "agent.toml"


def _load(tmp_path, monkeypatch, site: str, own: str = "") -> config.AgentConfig:
    (tmp_path / "agent.toml").write_text(site)
    monkeypatch.setenv("HOMESYNC_AGENT_DEFAULTS", str(tmp_path / "agent.toml"))
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir(exist_ok=True)
    paths.config_file.write_text(BASE + own)
    return config.load(paths)


def test_site_defaults_apply_and_the_users_own_keys_win(tmp_path, monkeypatch):
    loaded = _load(tmp_path, monkeypatch, '[network]\ncorporate_domains = ["corp.example"]\n'
                   '[agent]\nmax_age = "12h"\ndebounce = "5m"\n[backup]\nexclude = ["sh:Videos"]\n',
                   '[agent]\ndebounce = "90s"\n')
    assert loaded.network.corporate_domains == ("corp.example",)
    assert (loaded.agent.max_age, loaded.agent.debounce) == (12 * 3600, 90)
    assert loaded.exclude == ("sh:Videos",)


def test_the_shipped_file_changes_nothing(tmp_path, monkeypatch):
    plain = _load(tmp_path, monkeypatch, "")
    assert _load(tmp_path, monkeypatch, SHIPPED.read_text()) == plain


def test_a_missing_file_is_no_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMESYNC_AGENT_DEFAULTS", str(tmp_path / "none.toml"))
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir()
    paths.config_file.write_text(BASE)
    assert config.load(paths).user == "joe"


def test_identity_in_the_site_file_is_refused_with_its_name(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, monkeypatch, '[server]\naddress = "evil:22"\n[agent]\nbogus = 1\n')
    assert "agent.toml" in raised.value.message and "[server]" in raised.value.message
