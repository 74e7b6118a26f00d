"""[server] storage_quota is checked as borg serve would take it: a size borg parses,
and at least 10M (borg serve refuses less, and then every backup fails with
"Connection closed by remote host")."""

from __future__ import annotations

import pytest

from homesync.errors import ConfigError
from homesync_server import config as server_config
from homesync_server.config import Layout


def _load(tmp_path, quota: str):
    layout = Layout(tmp_path)
    layout.config_file.write_text(f'[server]\nlisten = "127.0.0.1:2222"\nstorage_quota = "{quota}"\n')
    return server_config.load(layout)


@pytest.mark.parametrize("quota", ["10M", "500G", "1.5T", "20000000"])
def test_sizes_borg_takes_are_kept(tmp_path, quota):
    assert _load(tmp_path, quota).storage_quota == quota


@pytest.mark.parametrize("quota, message", [("1M", "must be at least 10M"), ("9999999", "must be at least 10M"),
                                            ("500g", "must be a size"), ("lots", "must be a size")])
def test_a_quota_borg_would_refuse_is_one_line_naming_it(tmp_path, quota, message):
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, quota)
    assert f"[server] storage_quota {message}" in raised.value.message and repr(quota) in raised.value.message
