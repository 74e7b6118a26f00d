"""`homesync setup` at first login, with the image's site configuration and no typed
server address: each of its four choices driven through a terminal (tmux), its
non-interactive form, and `homesync backup`'s progress bar (on a terminal only).
Restores are checked bit for bit."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from tests.support.homesync_client import Computer
from tests.support.homesync_server import PASSWORDS, start_server
from tests.support.processes import VENV_BIN, chown_tree, private_dir, remove, run_as_user
from tests.support.terminal import Terminal, user_command
from tests.support.trees import assert_same_tree, make_home, snapshot

NOT_BACKED_UP = (".config/homesync", ".local/share/homesync", ".local/state/homesync", ".cache",
                 ".local/share/Trash")
TEMPLATE_LEFT_OUT = (".config/homesync", ".local/share/homesync", ".local/state", ".cache", ".local/share/Trash")
SOURCES = {"Joe's Thinkpad": 21, "Joe's Workstation": 22, "Joe's Old Desktop": 23}


class Fleet:
    """A server with joe's backed-up computers and a template, and the site file an image carries."""

    def __init__(self) -> None:
        self.server = start_server(full_names={"joe": "Joe Bloggs"})
        self.base = private_dir("hs-fleet-")
        site_dir = self.base / "etc-homesync"
        site_dir.mkdir()
        (site_dir / "agent.toml").write_text(
            f'[server]\naddresses = ["127.0.0.1:1", "{self.server.address}"]  # the first does not answer\n'
            f'fingerprint = "{self.server.fingerprint}"\n')
        self.env = {"HOMESYNC_SYSTEM_CONFIG_DIR": str(site_dir), "XDG_CONFIG_DIRS": str(self.base / "no-xdg"),
                    "USER": "joe", "LOGNAME": "joe", "HOMESYNC_CHASSIS": "laptop"}
        self.homes = {}
        for name, seed in SOURCES.items():
            computer = Computer(self.base / f"source-{seed}")
            computer.home.mkdir()
            make_home(computer.home, seed=seed, files=60, total_bytes=2 << 20)
            computer.enroll_and_back_up(self.server, "joe", name)
            self.homes[name] = snapshot(computer.home, exclude=NOT_BACKED_UP)
        template = self.base / "template"
        make_home(template, seed=24, files=60, total_bytes=2 << 20)
        chown_tree(self.base)
        self.server.cli_json("template", "publish", "Standard Laptop", "--from", str(template))
        self.template = snapshot(template, exclude=TEMPLATE_LEFT_OUT)

    def run(self, computer: Computer, *args: str, input: str | None = None):
        return run_as_user([str(VENV_BIN / "homesync"), *args], computer.home, input=input, timeout=300, **self.env)

    def terminal(self, computer: Computer, *args: str) -> Terminal:
        return Terminal(user_command(computer.home, [str(VENV_BIN / "homesync"), *args], self.env))

    def close(self) -> None:
        self.server.stop()
        remove(self.server.data.parent)
        remove(self.base)


@pytest.fixture(scope="module")
def fleet():
    made = Fleet()
    yield made
    made.close()


def _enrolled_as(computer: Computer) -> str:
    return tomllib.loads((computer.home / ".config/homesync/config.toml").read_text())["machine"]["name"]


def _log_in(terminal: Terminal) -> str:
    terminal.wait_for("Password for joe:")
    terminal.type(PASSWORDS["joe"])
    screen = terminal.wait_for(r"Choose \[n/r/i/t\]")
    assert "Signed in as Joe Bloggs (joe)" in screen
    for name in SOURCES:
        assert re.search(rf"\d\) {re.escape(name)}  \(last backup \d{{4}}-\d\d-\d\d \d\d:\d\d \(\d+(\.\d)? (s|min|h|d) ago\)",
                         screen), screen
    assert "Standard Laptop" in screen
    return screen


def _finish(terminal: Terminal, timeout: float = 180) -> str:
    screen = terminal.wait_for(r"EXIT=\d+", timeout=timeout)
    assert "EXIT=0" in screen, screen
    return screen


def _number(screen: str, name: str) -> str:
    return re.search(rf"(\d)\) {re.escape(name)}  \(last", screen).group(1)


def _set_up(fleet: Fleet, computer: Computer, choice: str, *steps) -> tuple[str, list[str]]:
    """Run `homesync setup` in a terminal: log in, type choice, then for each (prompt,
    answer) step wait for the prompt and type the answer (a callable is given the login
    screen); return the last screen and the screens each prompt appeared on."""
    terminal = fleet.terminal(computer, "setup")
    asked = []
    try:
        login = _log_in(terminal)
        terminal.type(choice)
        for prompt, answer in steps:
            asked.append(terminal.wait_for(prompt))
            terminal.type(answer(login) if callable(answer) else answer)
        return _finish(terminal), asked
    finally:
        terminal.close()


def test_setup_as_a_new_computer_suggests_a_name_and_backs_up_with_a_bar(fleet, computer_factory):
    new = computer_factory()
    (new.home / "first.txt").write_text("hello\n")
    chown_tree(new.home)
    screen, _ = _set_up(fleet, new, "n", (r"Name for this computer \[Joe's laptop\]", ""))  # take the suggestion
    assert "this computer is set up as \"Joe's laptop\"" in screen, screen
    assert re.search(r"\[#{30}\] 100\.0%", screen), "the first backup draws a progress bar"
    assert re.search(r"archive \S+: \d+ files", screen)
    assert _enrolled_as(new) == "Joe's laptop"
    rows = fleet.server.index_rows("SELECT m.name, COUNT(a.name) FROM machines m JOIN archives a "
                                   "ON a.machine_id = m.id WHERE m.name = 'Joe''s laptop' GROUP BY m.id")
    assert rows == [("Joe's laptop", 1)]


def test_setup_as_the_replacement_of_a_computer(fleet, computer_factory):
    new = computer_factory()
    screen, _ = _set_up(fleet, new, "r",
                        (r"Replace which computer\? \[1-\d\]", lambda login: _number(login, "Joe's Thinkpad")))
    assert "this computer is now \"Joe's Thinkpad\"" in screen, screen
    assert re.search(r"\[#{30}\] 100\.0%", screen), "the restore draws its bar"
    assert _enrolled_as(new) == "Joe's Thinkpad"
    assert_same_tree(fleet.homes["Joe's Thinkpad"], snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)


def test_setup_identical_to_a_computer(fleet, computer_factory):
    new = computer_factory()
    screen, _ = _set_up(fleet, new, "i",
                        (r"Identical to which computer\? \[1-\d\]", lambda login: _number(login, "Joe's Workstation")),
                        (r"Name for this computer \[Joe's laptop( \d)?\]", "Lab 7"))
    assert "enrolled as a new machine, 'Lab 7'" in screen, screen
    assert _enrolled_as(new) == "Lab 7"
    assert_same_tree(fleet.homes["Joe's Workstation"], snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)


def test_setup_from_a_template(fleet, computer_factory):
    new = computer_factory()
    name_prompt = r"Name for this computer \[(Joe's laptop( \d)?)\]"
    screen, asked = _set_up(fleet, new, "t", (r"Start from which template\? \[1-1\]", "1"), (name_prompt, ""))
    suggested = re.search(name_prompt, asked[1]).group(1)
    assert "template 'Standard Laptop'" in screen, screen
    assert _enrolled_as(new) == suggested
    assert_same_tree(fleet.template, snapshot(new.home, exclude=TEMPLATE_LEFT_OUT), ignore_root=True)


def test_setup_without_a_terminal_replaces_by_flags(fleet, computer_factory):
    new = computer_factory()
    done = fleet.run(new, "setup", "--replace", "joe's old desktop", "--password-stdin", "--json",
                     input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["choice"] == "replace" and result["machine"] == "Joe's Old Desktop"
    assert "\r" not in done.stderr and "[#" not in done.stderr
    assert _enrolled_as(new) == "Joe's Old Desktop"
    assert_same_tree(fleet.homes["Joe's Old Desktop"], snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)


@pytest.mark.parametrize("flags, name, expected", [
    (["--clone", "Joe's Workstation", "--as", "Lab 8"], "Lab 8", "Joe's Workstation"),
    (["--template", "Standard Laptop", "--as", "Lab 9"], "Lab 9", None),
])
def test_setup_without_a_terminal_clones_or_starts_from_a_template_by_flags(fleet, computer_factory, flags, name,
                                                                           expected):
    new = computer_factory()
    done = fleet.run(new, "setup", *flags, "--password-stdin", "--json", input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["choice"] == ("clone" if expected else "template") and result["machine"] == name
    assert "\r" not in done.stderr and "[#" not in done.stderr
    assert _enrolled_as(new) == name
    if expected:
        assert_same_tree(fleet.homes[expected], snapshot(new.home, exclude=NOT_BACKED_UP), ignore_root=True)
    else:
        assert_same_tree(fleet.template, snapshot(new.home, exclude=TEMPLATE_LEFT_OUT), ignore_root=True)


def test_setup_new_without_a_terminal_draws_no_bar(fleet, computer_factory):
    new = computer_factory()
    (new.home / "a.txt").write_text("a")
    chown_tree(new.home)
    done = fleet.run(new, "setup", "--new", "--machine", "Joe's Scripted Box", "--password-stdin",
                     input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr
    assert "this computer is set up as \"Joe's Scripted Box\"" in done.stdout
    assert "archive " in done.stdout
    assert "\r" not in done.stderr and "[#" not in done.stderr
    again = fleet.run(new, "setup", "--new", "--password-stdin", input=PASSWORDS["joe"] + "\n")
    assert again.returncode == 4 and "already set up as \"Joe's Scripted Box\"" in again.stderr


@pytest.mark.parametrize("flags", [["--new", "--replace", "X"], ["--clone", "X", "--template", "T"],
                                   ["--replace", "X", "--as", "Y"], ["--machine", "Y"], []])
def test_bad_flag_combinations_are_one_line_and_exit_29(fleet, computer_factory, flags):
    new = computer_factory()
    done = fleet.run(new, "setup", *flags, "--password-stdin", input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 29, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("homesync: error: ")
    assert not (new.home / ".config/homesync").exists()


def test_a_name_already_taken_is_refused_before_anything_is_written(fleet, computer_factory):
    new = computer_factory()
    done = fleet.run(new, "setup", "--template", "Standard Laptop", "--as", "joe's workstation",
                     "--password-stdin", input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 4 and "already have a computer named \"Joe's Workstation\"" in done.stderr
    assert sorted(p.name for p in new.home.iterdir()) == []


def test_backup_on_a_terminal_draws_a_progress_bar(fleet, computer_factory):
    computer = computer_factory()
    make_home(computer.home, seed=25, files=40, total_bytes=1 << 20)
    computer.enroll_and_back_up(fleet.server, "joe", "Joe's Bar Test")
    terminal = fleet.terminal(computer, "backup")
    try:
        screen = _finish(terminal, timeout=120)
    finally:
        terminal.close()
    assert re.search(r"\[#{30}\] 100\.0%", screen), screen
    plain = computer.run("backup")  # not a terminal: no bar
    assert plain.returncode == 0 and "\r" not in plain.stderr and "[#" not in plain.stderr


def test_the_listing_setup_needs_is_for_password_logins_only(fleet, computer_factory):
    from homesync import transport
    from homesync.errors import PermissionDeniedError
    server = fleet.server
    with transport.Session.connect(server.address, server.fingerprint, "joe", password=PASSWORDS["joe"]) as session:
        rpc = session.rpc()
        assert rpc.call("whoami")["display_name"] == "Joe Bloggs"
        assert [t["name"] for t in rpc.call("templates.list")] == ["Standard Laptop"]
    computer = computer_factory()
    assert computer.enroll(server, "ann", "Ann's Key Test").returncode == 0
    key = transport.load_key(computer.home / ".local/share/homesync/machine_key")
    with transport.Session.connect(server.address, server.fingerprint, computer.machine_id(), key=key) as session:
        with pytest.raises(PermissionDeniedError):
            session.rpc().call("templates.list")
        assert "display_name" not in session.rpc().call("whoami")


def _site_env(server, base) -> dict[str, str]:
    """Write the image's site file for server under base; return the environment that finds it."""
    site_dir = base / "etc-homesync"
    site_dir.mkdir()
    (site_dir / "agent.toml").write_text(f'[server]\naddresses = ["{server.address}"]\n'
                                         f'fingerprint = "{server.fingerprint}"\n')
    chown_tree(base)
    return {"HOMESYNC_SYSTEM_CONFIG_DIR": str(site_dir), "XDG_CONFIG_DIRS": str(base / "no-xdg"),
            "USER": "joe", "LOGNAME": "joe"}


def _setup_new_argv(name: str) -> list[str]:
    return [str(VENV_BIN / "homesync"), "setup", "--new", "--machine", name, "--password-stdin"]


def _set_up_all_the_same(new: Computer, server, name: str, env: dict[str, str]) -> str:
    """Check the computer is enrolled as name (here and on the server), with no complete
    backup, and that setup refuses to run again; return its machine id."""
    assert _enrolled_as(new) == name
    [(machine_id, state)] = server.index_rows(f"SELECT id, state FROM machines WHERE name = '{name.replace(chr(39), chr(39) * 2)}'")
    assert state == "active"
    assert not [a for a in server.index_rows(f"SELECT result FROM archives WHERE machine_id = '{machine_id}'")
                if a[0] in ("success", "warning")]
    again = run_as_user([str(VENV_BIN / "homesync"), "setup", "--new", "--password-stdin"], new.home,
                        input=PASSWORDS["joe"] + "\n", timeout=300, **env)
    assert again.returncode == 4 and f"already set up as \"{name}\"" in again.stderr
    return machine_id


def _the_agent_backs_it_up(new: Computer, server, base, machine_id: str) -> None:
    """Start the user's agent (no NetworkManager: the server answering is the link) with the
    agent tests' fast timings; wait for its backup."""
    import os
    from tests.end_to_end.agent.harness import FAST, Laptop, stop_and_clean, wait_for
    path = new.home / ".config/homesync/config.toml"
    written = tomllib.loads(path.read_text())
    written["agent"] = dict(written.get("agent", {}), **FAST)
    path.write_text("".join(f"[{section}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in t.items())
                            + "\n" for section, t in written.items()))
    chown_tree(path.parent)
    runtime = private_dir("hs-run-")
    os.chmod(runtime, 0o700)
    laptop = Laptop(new, server, {"XDG_RUNTIME_DIR": str(runtime),
                                  "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={base}/no-system-bus",
                                  "DBUS_SESSION_BUS_ADDRESS": f"unix:path={base}/no-session-bus"},
                    runtime, machine_id)
    try:
        laptop.start()
        wait_for(laptop.successes, 90, "the agent's backup once the server can take it")
    finally:
        print(stop_and_clean(laptop)[-4000:])


def test_a_first_backup_that_fails_during_setup_leaves_a_set_up_computer_the_agent_backs_up(computer_factory):
    """`setup --new` whose first backup fails (the server's storage quota is hit mid-backup):
    one clear line, a non-zero exit, the computer enrolled all the same, and, once the
    server has room again, the agent backs it up by itself: nothing half-done needs a human."""
    server = start_server(settings='storage_quota = "10M"')
    base = private_dir("hs-quota-")
    try:
        env = _site_env(server, base)
        new = computer_factory()
        make_home(new.home, seed=31, files=40, total_bytes=14 << 20)  # incompressible: over the 10 MB quota (borg's least)
        chown_tree(new.home)
        done = run_as_user(_setup_new_argv("Joe's Full Box"), new.home, input=PASSWORDS["joe"] + "\n", timeout=300,
                           **env)
        print(done.stderr)
        assert done.returncode == 25  # DiskFullError: the quota is the server's room for this computer
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("homesync: error: this computer is set up as \"Joe's Full Box\", but its first "
                               "backup failed: "), line
        assert "storage quota on the backup server is used up" in line
        assert "nothing to redo: the agent tries again by itself, or run `homesync backup`" in line
        machine_id = _set_up_all_the_same(new, server, "Joe's Full Box", env)

        assert server.stop() == 0  # the admin makes room: no step on the computer
        config = server.data / "server.toml"
        config.write_text(config.read_text().replace('storage_quota = "10M"', 'storage_quota = "1G"'))
        server.start()
        _the_agent_backs_it_up(new, server, base, machine_id)
    finally:
        server.stop()
        remove(server.data.parent)
        remove(base)


def test_a_first_backup_cut_off_by_the_server_stopping_leaves_a_set_up_computer(computer_factory):
    """The server stops while setup's first backup runs: one line, non-zero, the computer
    set up (the repository not left locked), and the agent backs it up once the server is back."""
    import os
    import subprocess
    import time
    from tests.support.processes import UNPRIVILEGED, user_env
    server = start_server()
    base = private_dir("hs-cutoff-")
    try:
        env = _site_env(server, base)
        new = computer_factory()
        big = new.home / "Videos"
        big.mkdir()
        for i in range(6):  # random: seconds of borg's work, cut off after 0.5 s
            (big / f"clip-{i}.raw").write_bytes(os.urandom(16 << 20))
        chown_tree(new.home)
        setup = subprocess.Popen(_setup_new_argv("Joe's Cut Box"), env=user_env(new.home, **env), cwd=new.home,
                                 user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        setup.stdin.write(PASSWORDS["joe"] + "\n")
        setup.stdin.close()
        deadline = time.monotonic() + 60
        locks = []
        enrolled = new.home / ".config/homesync/config.toml"  # written once enrollment is done, before the backup
        while not locks and time.monotonic() < deadline and setup.poll() is None:
            locks = list((server.data / "repos").glob("*/lock.exclusive")) if enrolled.exists() else []
            time.sleep(0.05)
        assert locks, "the first backup never started"
        time.sleep(0.5)  # some data on its way
        assert server.stop(at_once=True) == 0  # not drained: the backup is cut off
        stderr = setup.stderr.read()
        setup.wait(120)
        print(stderr)
        assert setup.returncode == 14  # ConnectionFailedError
        [line] = stderr.strip().splitlines()
        # the shim's word when the channel closes with no exit status, borg's lost connection otherwise
        assert "closed the connection (it stopped or restarted)" in line or \
            "the connection to the backup server broke during borg create (it stopped or restarted" in line
        assert line.startswith("homesync: error: this computer is set up as \"Joe's Cut Box\", but its first "
                               "backup failed: "), line
        assert "nothing to redo: the agent tries again by itself, or run `homesync backup`" in line
        server.start()
        machine_id = _set_up_all_the_same(new, server, "Joe's Cut Box", env)
        _the_agent_backs_it_up(new, server, base, machine_id)
        assert not (server.data / "repos" / machine_id / "lock.exclusive").exists()
    finally:
        server.stop()
        remove(server.data.parent)
        remove(base)


def test_setup_logs_in_through_the_first_address_that_answers_as_a_backup_does(fleet, computer_factory):
    """Setup's login fails over as the agent and a manual backup do (one failover,
    fleet.first_answering): an address that accepts but never greets costs the probe's
    2 s, not the SSH handshake's 10 s, and a closed one next to nothing."""
    import socket
    import time
    from tests.support.processes import free_port
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never says SSH-
    base = private_dir("hs-site-")
    try:
        site_dir = base / "etc-homesync"
        site_dir.mkdir()
        addresses = [f"127.0.0.1:{silent.getsockname()[1]}", f"127.0.0.1:{free_port()}", fleet.server.address]
        (site_dir / "agent.toml").write_text("[server]\naddresses = [" + ", ".join(f'"{a}"' for a in addresses)
                                             + f']\nfingerprint = "{fleet.server.fingerprint}"\n')
        chown_tree(base)
        env = dict(fleet.env, HOMESYNC_SYSTEM_CONFIG_DIR=str(site_dir))
        new = computer_factory()
        started = time.monotonic()
        done = run_as_user([str(VENV_BIN / "homesync"), "setup", "--template", "Standard Laptop", "--as",
                            "joe's workstation", "--password-stdin"], new.home, input=PASSWORDS["joe"] + "\n",
                           timeout=300, **env)
        elapsed = time.monotonic() - started
        print(f"setup's login with a silent and a closed address first: {elapsed:.2f} s")
        # logged in (it knows joe's computers), then refused: the name is taken
        assert done.returncode == 4 and "already have a computer named \"Joe's Workstation\"" in done.stderr
        assert elapsed < 8
    finally:
        silent.close()
        remove(base)


def test_a_first_backup_that_fails_on_a_terminal_ends_the_bar_before_the_error(computer_factory):
    """On a terminal, setup --new draws the first backup's bar; when that backup fails (the
    storage quota hit), the one error line starts a line of its own, not glued to the bar."""
    server = start_server(settings='storage_quota = "10M"')
    base = private_dir("hs-quota-tty-")
    try:
        env = _site_env(server, base)
        new = computer_factory()
        # incompressible, three times the 10 MB quota: borg hits it while it reads the files (with
        # 14 MB it sometimes read them all, drew 100%, and hit the quota at the commit)
        make_home(new.home, seed=32, files=60, total_bytes=30 << 20)
        chown_tree(new.home)
        terminal = Terminal(user_command(new.home, [str(VENV_BIN / "homesync"), "setup", "--new", "--machine",
                                                    "Joe's Bar Box"], env))
        try:
            terminal.wait_for("Password for joe:")
            terminal.type(PASSWORDS["joe"])
            screen = terminal.wait_for(r"EXIT=\d+", timeout=180)
        finally:
            terminal.close()
        print(screen)
        assert "EXIT=25" in screen
        assert re.search(r"\[[# ]{30}\] +\d+\.\d%", screen), screen  # the bar was drawn
        lines = screen.splitlines()
        [error] = [i for i, line in enumerate(lines) if "homesync: error:" in line]
        assert lines[error].startswith("homesync: error: this computer is set up as \"Joe's Bar Box\""), screen
        assert _enrolled_as(new) == "Joe's Bar Box"
    finally:
        server.stop()
        remove(server.data.parent)
        remove(base)
