"""The site configuration an OS image carries (/etc/homesync/agent.toml and
$XDG_CONFIG_DIRS/homesync/agent.toml): found, merged in XDG order, checked with every
problem in one line, and read beneath the user's own config.toml."""

from __future__ import annotations

import pytest

from homesync import config as agent_config
from homesync import site
from homesync.config import Paths
from homesync.errors import ConfigError

FP = "SHA256:" + "A" * 43
OTHER_FP = "SHA256:" + "B" * 43


def _write(directory, text):
    (directory / "homesync").mkdir(parents=True, exist_ok=True)
    (directory / "homesync/agent.toml").write_text(text)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    etc, xdg1, xdg2 = tmp_path / "etc", tmp_path / "xdg1", tmp_path / "xdg2"
    monkeypatch.setenv(site.ENV_SYSTEM_DIR, str(etc / "homesync"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", f"{xdg1}:{xdg2}")
    return etc, xdg1, xdg2


def test_no_site_file_is_none(dirs):
    assert site.load() is None


def test_the_etc_file_gives_address_and_fingerprint(dirs):
    etc, _, _ = dirs
    _write(etc, f'[server]\naddress = "backup.example.org:2222"\nfingerprint = "{FP}"\n')
    found = site.load()
    assert found.addresses == ("backup.example.org:2222",) and found.fingerprint == FP
    assert found.files == (etc / "homesync/agent.toml",)


def test_xdg_dirs_override_etc_and_the_first_xdg_dir_wins(dirs):
    etc, xdg1, xdg2 = dirs
    _write(etc, f'[server]\naddress = "etc:1"\nfingerprint = "{FP}"\n')
    _write(xdg2, '[server]\naddresses = ["xdg2:1", "xdg2:2"]\n')
    found = site.load()
    assert found.addresses == ("xdg2:1", "xdg2:2") and found.fingerprint == FP
    _write(xdg1, f'[server]\naddress = "xdg1:1"\nfingerprint = "{OTHER_FP}"\n')
    found = site.load()
    assert found.addresses == ("xdg1:1",) and found.fingerprint == OTHER_FP


def test_every_problem_in_one_error_naming_the_file(dirs):
    etc, _, _ = dirs
    _write(etc, '[server]\naddress = 5\nfingerprint = "nope"\ncolour = "red"\n[extra]\n')
    with pytest.raises(ConfigError) as caught:
        site.load()
    line = caught.value.line()
    assert str(etc / "homesync/agent.toml") in line and "\n" not in line
    for problem in ("address must be", "fingerprint", "'colour'", "[extra]"):
        assert problem in line


def test_a_file_without_a_fingerprint_is_refused(dirs):
    etc, _, _ = dirs
    _write(etc, '[server]\naddress = "backup:2222"\n')
    with pytest.raises(ConfigError, match="fingerprint is missing"):
        site.load()


def test_the_users_config_is_read_above_the_site_file(dirs, tmp_path):
    etc, _, _ = dirs
    _write(etc, f'[server]\naddress = "site:2222"\nfingerprint = "{FP}"\n')
    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    paths.config_dir.mkdir()
    # an enrollment that names only the user and the machine: the site gives the server
    paths.config_file.write_text('[server]\nuser = "joe"\n[machine]\nid = "0123456789abcdef"\nname = "J"\n')
    loaded = agent_config.load(paths)
    assert (loaded.server, loaded.fingerprint) == ("site:2222", FP)
    paths.config_file.write_text(f'[server]\naddress = "own:1"\nfingerprint = "{OTHER_FP}"\nuser = "joe"\n'
                                 '[machine]\nid = "0123456789abcdef"\nname = "J"\n')
    loaded = agent_config.load(paths)
    assert (loaded.server, loaded.fingerprint) == ("own:1", OTHER_FP)


def test_not_enrolled_points_at_setup_when_the_image_has_a_site_file(dirs, tmp_path):
    from homesync.errors import NotEnrolledError
    etc, _, _ = dirs
    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    with pytest.raises(NotEnrolledError) as caught:
        agent_config.load(paths)
    assert "homesync enroll" in caught.value.hint
    _write(etc, f'[server]\naddress = "site:2222"\nfingerprint = "{FP}"\n')
    with pytest.raises(NotEnrolledError) as caught:
        agent_config.load(paths)
    assert "homesync setup" in caught.value.hint
