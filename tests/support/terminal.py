"""A terminal for tests, driven like a person at it: tmux send-keys in, capture-pane
out. The command runs as the unprivileged user with a minimal environment."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.processes import PRODUCT_PATH, UNPRIVILEGED


class Terminal:
    def __init__(self, command: str, width: int = 160) -> None:
        self.socket = f"hs-test-{uuid.uuid4().hex[:8]}"
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", "50", command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-100")

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if re.search(pattern, text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} never appeared; the screen:\n{self.screen()}")

    def type(self, text: str) -> None:
        if text:
            self._tmux("send-keys", "-t", "t", "-l", text)
        self._tmux("send-keys", "-t", "t", "Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def user_command(home: Path, argv: list[str], env: dict[str, str] | None = None) -> str:
    """Return a shell command running argv in home as the unprivileged user, then
    printing EXIT=<status> and staying open for the screen to be read."""
    extra = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    run = " ".join(shlex.quote(a) for a in argv)
    product_path = shlex.quote(str(PRODUCT_PATH))
    return (f"setpriv --reuid={UNPRIVILEGED} --regid={UNPRIVILEGED} --clear-groups "
            f"env -i HOME={home} PATH=/usr/bin:/bin LANG=C.UTF-8 TERM=xterm PYTHONPATH={product_path} {extra} "
            f"sh -c {shlex.quote(f'cd {home} && {run}; echo EXIT=$?; sleep 120')}")
