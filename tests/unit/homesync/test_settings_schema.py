"""The one schema of the agent's settings: the same checks and the same messages for a
user's config.toml and for a fleet policy file."""

from __future__ import annotations

import pytest

from homesync import config, settings
from homesync.errors import ConfigError

BAD = {
    "unknown key": ("[agent]\nbogus = 1\n", "[agent] unknown key 'bogus'"),
    "wrong type": ('[network]\nallow_metered = "no"\n', "[network] allow_metered must be a bool"),
    "bad duration": ('[agent]\ndebounce = "soon"\n', "[agent] debounce must be a duration"),
    "bad domain": ('[network]\ncorporate_domains = ["corp example.com"]\n',
                   "[network] corporate_domains must be a list of DNS domains"),
    "bad rate": ('[backup]\nupload_ratelimit = "fast"\n', "[backup] upload_ratelimit must be an upload rate"),
}
BASE = ('[server]\naddress = "127.0.0.1:2222"\nfingerprint = "SHA256:x"\nuser = "joe"\n'
        '[machine]\nid = "0123456789abcdef"\nname = "Joe"\n')


def _config_problems(tmp_path, text: str) -> str:
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir(exist_ok=True)
    paths.config_file.write_text(BASE + text)
    with pytest.raises(ConfigError) as error:
        config.load(paths)
    return error.value.message


def _policy_problems(text: str) -> list[str]:
    import tomllib
    return settings.check_policy(tomllib.loads(text))[1]


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_same_message_for_config_toml_and_a_policy(tmp_path, case):
    text, message = BAD[case]
    assert message in _config_problems(tmp_path, text)
    assert any(p.startswith(message) for p in _policy_problems(text))


def test_every_problem_of_a_policy_at_once():
    problems = _policy_problems('[agent]\nbogus = 1\ndebounce = "soon"\n[network]\nallow_metered = "no"\n'
                                'corporate_domains = ["corp example.com"]\n[backup]\nupload_ratelimit = "fast"\n'
                                '[printer]\nx = 1\n')
    for _, message in BAD.values():
        assert any(p.startswith(message) for p in problems), (message, problems)
    assert "unknown section [printer]" in problems and len(problems) == 6


def test_good_values_are_parsed():
    values, problems = settings.check_policy({
        "network": {"corporate_domains": ["corp.example.com", "~ad.example.com"]},
        "agent": {"max_age": "6h", "policy_interval": "2s"},
        "backup": {"upload_ratelimit": "10MiB/s", "exclude": ["sh:Videos"]},
        "server": {"addresses": ["backup.example.org:2222", "[::1]:2222"]},
        "policy": {"user_may_override": ["agent.debounce", "backup.*"]}})
    assert problems == []
    assert values["agent"] == {"max_age": 21600.0, "policy_interval": 2.0}
    assert values["backup"]["upload_ratelimit"] == 10240.0
    assert values["server"]["addresses"] == ("backup.example.org:2222", "[::1]:2222")


@pytest.mark.parametrize("value", [["nohost"], ["host:0"], ["host:99999"], "host:1", []])
def test_bad_addresses(value):
    assert settings.check_policy({"server": {"addresses": value}})[1] == [
        '[server] addresses must be a list of HOST:PORT addresses (e.g. ["backup.example.org:2222"])']


def test_only_known_settings_may_be_left_to_users():
    assert settings.check_policy({"policy": {"user_may_override": ["agent.nonsense"]}})[1]
    assert settings.may_override("agent.debounce", None)
    assert not settings.may_override("agent.debounce", ("network.*",))
    assert settings.may_override("network.allow_metered", ("network.*",))
    assert not settings.may_override("server.addresses", None)


def test_config_toml_takes_the_upload_rate_and_the_policy_interval(tmp_path):
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir()
    paths.config_file.write_text(BASE + '[backup]\nupload_ratelimit = 512\n[agent]\npolicy_interval = "5s"\n')
    loaded = config.load(paths)
    assert loaded.upload_ratelimit == 512 and loaded.agent.policy_interval == 5


def test_the_checkpoint_interval_reaches_borg_create(tmp_path):
    from homesync import borg
    paths = config.Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir()
    paths.config_file.write_text(BASE)
    assert config.load(paths).checkpoint_interval == borg.CHECKPOINT_SECONDS == 300
    paths.config_file.write_text(BASE + '[backup]\ncheckpoint_interval = "2min"\n')
    loaded = config.load(paths)
    argv = borg.make_create_command("repo", "a", [], checkpoint_seconds=loaded.checkpoint_interval)
    assert argv[argv.index("--checkpoint-interval") + 1] == "120"
    paths.config_file.write_text(BASE + '[backup]\ncheckpoint_interval = "often"\n')
    try:
        config.load(paths)
    except config.ConfigError as e:
        assert "[backup] checkpoint_interval must be a duration" in e.message
    else:
        raise AssertionError("a checkpoint interval that is no duration was taken")
