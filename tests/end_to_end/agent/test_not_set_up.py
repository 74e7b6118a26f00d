"""The agent on a computer that is not set up, with the image's site configuration:
it notifies once on the desktop, `homesync status` says so (exit 30), and once
`homesync setup` has run it becomes the real agent without a restart. Without a site
configuration it still refuses to start (not enrolled)."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.end_to_end.agent.harness import wait_for
from tests.support.homesync_server import PASSWORDS
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, private_dir, remove, run_as_user, user_env


def _site(server) -> tuple:
    base = private_dir("hs-site-")
    (base / "homesync").mkdir()
    (base / "homesync/agent.toml").write_text(f'[server]\naddress = "{server.address}"\n'
                                              f'fingerprint = "{server.fingerprint}"\n')
    chown_tree(base)
    return base, {"HOMESYNC_SYSTEM_CONFIG_DIR": str(base / "homesync"), "XDG_CONFIG_DIRS": str(base / "none")}


def _start_agent(home, env) -> subprocess.Popen:
    demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.Popen([str(VENV_BIN / "homesync"), "agent"], cwd=home, env=user_env(home, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **demote)


def test_not_set_up_notifies_once_says_so_and_starts_after_setup(fresh_server, computer_factory, system_bus,
                                                                  session_bus, fake_notifications):
    computer = computer_factory()
    (computer.home / "notes.txt").write_text("to be backed up\n")
    chown_tree(computer.home)
    site_base, site_env = _site(fresh_server)
    runtime = private_dir("hs-run-")
    os.chmod(runtime, 0o700)
    env = dict(site_env, XDG_RUNTIME_DIR=str(runtime), DBUS_SESSION_BUS_ADDRESS=session_bus.address,
               DBUS_SYSTEM_BUS_ADDRESS=system_bus.address, USER="joe", LOGNAME="joe", HOMESYNC_CHASSIS="laptop")
    before = run_as_user([str(VENV_BIN / "homesync"), "status"], computer.home, **env)
    assert before.returncode == 5 and before.stdout.endswith("not set up yet (see `homesync setup`)\n"), before
    agent = _start_agent(computer.home, env)
    try:
        [notice] = fake_notifications.wait_for_calls(1, timeout=30)
        assert notice["summary"] == "This computer is not backed up yet"
        assert "homesync setup" in notice["body"]

        def status(*args):
            return run_as_user([str(VENV_BIN / "homesync"), "status", *args], computer.home, **env)
        said = status()
        assert said.returncode == 30, said.stderr
        assert "not set up yet: run `homesync setup`" in said.stdout and fresh_server.address in said.stdout
        answer = json.loads(status("--json").stdout)
        assert answer["set_up"] is False and answer["state"] == "not set up" and answer["agent"]["running"]

        done = run_as_user([str(VENV_BIN / "homesync"), "setup", "--new", "--no-backup", "--password-stdin"],
                           computer.home, input=PASSWORDS["joe"] + "\n", **env)
        assert done.returncode == 0, done.stderr
        set_up = time.monotonic()

        def running_agent():
            said = status("--json")
            return said.returncode in (0, 5) and json.loads(said.stdout).get("machine")
        # the same process is now the real agent, as the computer it was set up as
        assert wait_for(running_agent, 30, "the agent started after setup") == "Joe's laptop"
        print(f"setup done -> the agent runs as the new machine: {time.monotonic() - set_up:.2f} s")
        assert agent.poll() is None
        assert len(fake_notifications.calls) == 1, "notified more than once"
    finally:
        agent.terminate()
        output = agent.communicate(timeout=60)[0].decode(errors="replace")
        remove(site_base)
        remove(runtime)
    assert agent.returncode == 0, output


def test_without_a_site_configuration_the_agent_still_refuses(computer_factory):
    computer = computer_factory()
    nowhere = str(computer.home / "no-site")
    done = run_as_user([str(VENV_BIN / "homesync"), "agent"], computer.home,
                       HOMESYNC_SYSTEM_CONFIG_DIR=nowhere, XDG_CONFIG_DIRS=nowhere)
    assert done.returncode == 3 and "not enrolled" in done.stderr
