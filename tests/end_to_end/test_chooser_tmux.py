"""The interactive chooser, driven like a person at a terminal: tmux send-keys in,
capture-pane out. The restore runs as the unprivileged user."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.support.homesync_server import PASSWORDS
from tests.support.processes import UNPRIVILEGED, VENV_BIN
from tests.support.terminal import Terminal


@pytest.fixture
def two_computers(fresh_server, computer_factory):
    for name, content in (("Joe's Workstation", "desk"), ("Joe's Thinkpad", "travel")):
        computer = computer_factory()
        (computer.home / "where.txt").write_text(content)
        computer.enroll_and_back_up(fresh_server, "joe", name)
    return fresh_server


def test_choose_a_computer_and_replace_it(two_computers, computer_factory):
    server = two_computers
    new = computer_factory()
    restore = " ".join(shlex.quote(a) for a in [
        str(VENV_BIN / "homesync"), "restore", "--server", server.address, "--user", "joe",
        "--fingerprint", server.fingerprint])
    command = (f"setpriv --reuid={UNPRIVILEGED} --regid={UNPRIVILEGED} --clear-groups "
               f"env -i HOME={new.home} PATH=/usr/bin:/bin LANG=C.UTF-8 TERM=xterm "
               f"sh -c {shlex.quote(f'cd {new.home} && {restore}; echo EXIT=$?; sleep 120')}")
    terminal = Terminal(command)
    try:
        terminal.wait_for("Password for joe:")
        terminal.type(PASSWORDS["joe"])
        screen = terminal.wait_for(r"Restore which computer\? \[1-2\]")
        assert "Joe's Workstation" in screen and "newest backup" in screen
        number = re.search(r"(\d)\) Joe's Thinkpad", screen).group(1)
        terminal.type("7")  # out of range: asked again
        terminal.type(number)
        terminal.wait_for(r"Choose \[r/c/f\]")
        terminal.type("r")
        screen = terminal.wait_for(r"EXIT=\d+", timeout=120)
        assert "EXIT=0" in screen, screen
        assert "this computer is now \"Joe's Thinkpad\"" in screen, screen
        assert re.search(r"\[#{30}\] 100\.0%", screen), "a progress bar on the terminal"
    finally:
        terminal.close()
    assert (new.home / "where.txt").read_text() == "travel"
    assert "Joe's Thinkpad" in (new.home / ".config/homesync/config.toml").read_text()


def test_without_a_terminal_the_machine_must_be_named(two_computers, computer_factory):
    computer = computer_factory()
    done = computer.run("restore", *computer.remote_args(two_computers, "joe"), input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 2 and "pass --machine NAME" in done.stderr
