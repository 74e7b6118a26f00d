"""The agent's own record (agent-state.json) damaged while it was not running: the real
agent starts anyway, sets the file aside, says so in `status` until its next backup,
which carries the note, and then writes a sound record again."""

from __future__ import annotations

import json

from tests.end_to_end.agent.harness import wait_for
from tests.support.processes import chown_tree


def test_a_damaged_agent_record_is_set_aside_said_in_status_and_rebuilt(laptop, fake_nm):
    state = laptop.home / ".local/state/homesync"
    state.mkdir(parents=True, exist_ok=True)
    (state / "agent-state.json").write_bytes(b'{"last_success": 17000')  # truncated
    chown_tree(laptop.home)
    laptop.start()
    status = laptop.ask()
    (note,) = [w for w in status["warnings"] if "agent-state.json was damaged" in w]
    assert "set aside" in note and (state / "agent-state.json.damaged").exists()
    assert "agent-state.json was damaged" in laptop.status().stdout
    fake_nm.connection_up("Office", domains=["corp.example.com"])
    wait_for(laptop.successes, 30, "a first backup")
    status = laptop.wait_status(lambda s: s["state"] == "idle" and s["last_result"], 10, "idle after it")
    assert "agent-state.json was damaged" in status["last_result"]["error"]  # said with that backup
    assert not any("agent-state.json" in w for w in status["warnings"]), status["warnings"]
    saved = json.loads((state / "agent-state.json").read_text())
    assert saved["last_success"] == status["last_success"]
