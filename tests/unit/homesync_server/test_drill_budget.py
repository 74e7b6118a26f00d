"""A drill's scratch budget while extracting: the watcher stops a writer whose tree
grows past its budget (many small files, each under any per-file limit), and leaves a
writer within budget alone; the [drill] section keeps scratch outside <data>."""

from __future__ import annotations

import pytest

from homesync import execute
from homesync.errors import ConfigError
from homesync_server import config as server_config
from homesync_server.actions.drill_budget import ScratchWatch, tree_bytes
from homesync_server.config import Layout


def _writer(root, files: int) -> list[str]:
    return ["/bin/sh", "-c", f"for i in $(seq {files}); do head -c 1048576 /dev/urandom > {root}/f$i; sleep 0.01; done"]


def test_a_tree_growing_past_its_budget_is_stopped(tmp_path):
    watch = ScratchWatch(tmp_path, 8 << 20, poll=0.02)
    done = execute.run(_writer(tmp_path, 200), env={"PATH": "/usr/bin:/bin"}, on_start=watch.start)
    watch.stop()
    assert watch.tripped and done.returncode < 0
    assert 8 << 20 < tree_bytes(tmp_path) < 100 << 20


def test_a_tree_within_its_budget_is_left_alone(tmp_path):
    watch = ScratchWatch(tmp_path, 64 << 20, poll=0.02)
    done = execute.run(_writer(tmp_path, 4), env={"PATH": "/usr/bin:/bin"}, on_start=watch.start)
    watch.stop()
    assert not watch.tripped and done.returncode == 0 and tree_bytes(tmp_path) >= 4 << 20


def test_the_scratch_directory_is_outside_the_data_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "server.toml").write_text(server_config.render_default("127.0.0.1:2222"))
    layout = Layout(data)
    drill = server_config.load(layout).drill
    assert drill.scratch == layout.default_scratch and not drill.scratch.is_relative_to(data)
    assert drill.max_bytes == 0 and Layout(tmp_path / "other").default_scratch != drill.scratch
    for line, problem in (('scratch = "relative"', "absolute"), (f'scratch = "{data}/scratch"', "outside"),
                          ("max_bytes = -1", "max_bytes")):
        (data / "server.toml").write_text(server_config.render_default("127.0.0.1:2222") + f"\n[drill]\n{line}\n")
        with pytest.raises(ConfigError, match=problem):
            server_config.load(layout)
