"""The [agent] table of config.toml: defaults, durations with units, and every problem
reported at once with the others."""

from __future__ import annotations

import tomllib

import pytest

from homesync import config
from homesync.agent import daemon
from homesync.errors import ConfigError
from tests.support.agent_config import BASE, config_paths



def _load(tmp_path, text: str) -> config.AgentConfig:
    return config.load(config_paths(tmp_path, BASE + text))


def test_defaults_without_an_agent_table(tmp_path):
    assert _load(tmp_path, "").agent == config.AgentSettings()


def test_the_enrollment_template_loads_with_the_defaults(tmp_path):
    rendered = config.render("127.0.0.1:2222", "SHA256:x", "joe", "0123456789abcdef", "Joe's Thinkpad")
    (tmp_path / "c").mkdir()
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_file.write_text(rendered)
    assert config.load(paths).agent == config.AgentSettings()


@pytest.mark.parametrize("value, seconds", [("90", 90), ('"90s"', 90), ('"15m"', 900), ('"15min"', 900),
                                            ('"2h"', 7200), ('"3d"', 259200), ('"0.5s"', 0.5), ("1.5", 1.5)])
def test_durations(tmp_path, value, seconds):
    assert _load(tmp_path, f"[agent]\ndebounce = {value}\n").agent.debounce == seconds


def test_settings_reach_the_policy(tmp_path):
    loaded = _load(tmp_path, '[network]\nallow_metered = true\n[agent]\nretry_min = "2m"\nretry_max = "2h"\n'
                             'min_battery_percent = 35\nmin_interval = "5m"\n')
    settings = daemon.policy_settings(loaded)
    assert (settings.backoff_base, settings.backoff_cap, settings.min_battery_percent, settings.min_interval,
            settings.allow_metered) == (120, 7200, 35, 300, True)


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, '[network]\nallow_metered = "no"\n[agent]\ndebounce = "soon"\nmin_battery_percent = 140\n'
                        'notifications = "yes"\nmax_age = -1\nbogus = 1\n')
    message = error.value.message
    for problem in ("[network] allow_metered must be a bool", "[agent] unknown key 'bogus'",
                    '[agent] debounce must be a duration', "[agent] min_battery_percent must be a percentage",
                    "[agent] notifications must be true or false", "[agent] max_age must be a duration"):
        assert problem in message
    assert message.startswith(str(tmp_path / "c" / "config.toml"))


def test_a_new_identity_keeps_the_settings_of_an_existing_file():
    old = config.render("old:1", "SHA256:old", "ann", "m" * 26, "Old") + 'max_age = "6h"\n'
    old = old.replace("corporate_ssids = []", 'corporate_ssids = ["CorpWiFi"]  # the office')
    merged = config.render_keeping(old, "new:2", "SHA256:new", "joe", "n" * 26, "New")
    raw = tomllib.loads(merged)
    assert raw["server"] == {"address": "new:2", "fingerprint": "SHA256:new", "user": "joe"}
    assert raw["machine"] == {"id": "n" * 26, "name": "New"}
    assert raw["network"]["corporate_ssids"] == ["CorpWiFi"] and "# the office" in merged
    assert raw["agent"]["max_age"] == "6h"


def test_an_unreadable_existing_file_is_kept_as_a_comment_not_lost():
    merged = config.render_keeping("[network\ngarbage = = 1", "a:1", "SHA256:x", "joe", "n" * 26, "New")
    assert tomllib.loads(merged)["machine"]["name"] == "New"
    assert "# garbage = = 1" in merged
