"""A computer's file catalog is named by its machine id: an id the server sends that is
not one (a path, say) is refused before any file is named by it."""

from __future__ import annotations

import pytest

from homesync.actions import history
from homesync.actions.restore import Source
from homesync.config import Paths
from homesync.errors import ProtocolError


@pytest.mark.parametrize("machine_id", ["../../.ssh/authorized_keys", "/etc/x", "ABCDEF0123456789", ""])
def test_an_id_that_is_no_machine_id_names_no_file(tmp_path, machine_id):
    paths = Paths(config_dir=tmp_path / "config", data_dir=tmp_path / "data", state_dir=tmp_path / "state",
                  cache_dir=tmp_path / "cache")
    source = Source(None, b"", {"id": machine_id, "name": "x"}, None)  # no RPC is made: it is refused first
    with pytest.raises(ProtocolError, match="no machine id"):
        history._refreshed(paths, source, search=True)
    assert not (tmp_path / "cache").exists()
