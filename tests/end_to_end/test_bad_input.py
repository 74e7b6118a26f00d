"""Bad input: each mistake gives one clear line and a non-zero exit, and nothing is
written or lost: no local configuration, no index row, no repository."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.support.homesync_server import PASSWORDS
from tests.support.processes import chown_tree, free_port


def _state(server):
    """What the server holds: machines in the index and repositories on disk."""
    with server.index() as index:
        machines = sorted((m["id"], m["name"]) for m in index.machines())
    return machines, sorted(os.listdir(server.data / "repos"))


def _assert_one_line(done, code: int, *fragments: str):
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("homesync: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_wrong_password_writes_nothing(homesync_server, computer_factory):
    computer = computer_factory()
    before = _state(homesync_server)
    done = computer.run("enroll", "--server", homesync_server.address, "--user", "joe", "--machine", "X",
                        "--fingerprint", homesync_server.fingerprint, "--password-stdin", input="wrong\n")
    _assert_one_line(done, 12, "login failed")
    assert not (computer.home / ".config").exists() and not (computer.home / ".local").exists()
    assert _state(homesync_server) == before
    with homesync_server.index() as index:
        assert "joe" in [e["actor"] for e in index.audit_events(action="login_failed")]


def test_unknown_user_fails_like_a_wrong_password(homesync_server, computer_factory):
    computer = computer_factory()
    done = computer.run("enroll", "--server", homesync_server.address, "--user", "nobody-here", "--machine", "X",
                        "--fingerprint", homesync_server.fingerprint, "--password-stdin", input="whatever\n")
    _assert_one_line(done, 12, "login failed: wrong user name or password")


def test_wrong_fingerprint_is_refused_before_anything_is_sent(homesync_server, computer_factory):
    computer = computer_factory()
    before = _state(homesync_server)
    other = "SHA256:" + "A" * 43
    done = computer.run("enroll", "--server", homesync_server.address, "--user", "joe", "--machine", "X",
                        "--fingerprint", other, "--password-stdin", input=PASSWORDS["joe"] + "\n")
    _assert_one_line(done, 13, "presented host key", homesync_server.fingerprint, other)
    assert not (computer.home / ".config").exists()
    assert _state(homesync_server) == before


@pytest.mark.parametrize("fingerprint", ["", "SHA256:short", "MD5:aa:bb", "SHA256:" + "A" * 42 + "!"])
def test_malformed_fingerprint(homesync_server, computer_factory, fingerprint):
    computer = computer_factory()
    done = computer.run("enroll", "--server", homesync_server.address, "--user", "joe", "--machine", "X",
                        "--fingerprint", fingerprint, "--password-stdin", input=PASSWORDS["joe"] + "\n")
    _assert_one_line(done, 2, "not a host key fingerprint")


@pytest.mark.parametrize("name, fragment", [
    ("", "empty"), ("   ", "empty"), ("Joe\x07s", "control character"), ("a\nb", "control character"),
    ("x" * 500, "500 characters"), ("evil\u202etxt", "control character")])
def test_invalid_machine_names(homesync_server, computer_factory, name, fragment):
    computer = computer_factory()
    before = _state(homesync_server)
    done = computer.run("enroll", "--server", homesync_server.address, "--user", "joe", "--machine", name,
                        "--fingerprint", homesync_server.fingerprint, "--password-stdin",
                        input=PASSWORDS["joe"] + "\n")
    _assert_one_line(done, 2, fragment)
    assert _state(homesync_server) == before
    assert not (computer.home / ".config").exists()


def test_duplicate_machine_name_is_refused_whatever_its_case(homesync_server, computer_factory):
    first, second = computer_factory(), computer_factory()
    assert first.enroll(homesync_server, "joe", "Joe's Desktop").returncode == 0
    before = _state(homesync_server)
    done = second.enroll(homesync_server, "joe", "  JOE'S DESKTOP ")
    _assert_one_line(done, 4, "already have a computer named")
    assert _state(homesync_server) == before
    assert not (second.home / ".config").exists()
    # another user may use the same name
    assert second.enroll(homesync_server, "ann", "Joe's Desktop").returncode == 0


def test_enrolling_twice_on_one_computer_is_refused(homesync_server, computer_factory):
    computer = computer_factory()
    assert computer.enroll(homesync_server, "joe", "Twice").returncode == 0
    config = (computer.home / ".config/homesync/config.toml").read_bytes()
    done = computer.enroll(homesync_server, "joe", "Twice again")
    _assert_one_line(done, 4, "already enrolled as 'Twice'")
    assert (computer.home / ".config/homesync/config.toml").read_bytes() == config


def test_unknown_machine_on_restore(homesync_server, computer_factory):
    computer = computer_factory()
    done = computer.run("restore", "--machine", "No Such Computer", *computer.remote_args(homesync_server, "joe"),
                        input=PASSWORDS["joe"] + "\n")
    _assert_one_line(done, 10, "no computer named 'No Such Computer'")
    assert sorted(os.listdir(computer.home)) == []


def test_unknown_archive_on_restore(homesync_server, computer_factory):
    computer = computer_factory()
    (computer.home / "f").write_text("x")
    computer.enroll_and_back_up(homesync_server, "joe", "Archive Test")
    target = computer.home / "t"
    done = computer.run("restore", "--machine", "Archive Test", "--archive", "2001-01-01T00:00:00.000Z",
                        "--target", str(target))
    _assert_one_line(done, 10, "has no archive")
    assert not any(target.iterdir())


def test_a_target_that_is_a_file(homesync_server, computer_factory):
    computer = computer_factory()
    (computer.home / "f").write_text("x")
    computer.enroll_and_back_up(homesync_server, "joe", "Target Test")
    target = computer.home / "precious.txt"
    target.write_text("do not touch")
    chown_tree(computer.home)
    done = computer.run("restore", "--machine", "Target Test", "--target", str(target))
    _assert_one_line(done, 21, "is a file")
    assert target.read_text() == "do not touch"


def test_a_server_that_is_down(computer_factory, homesync_server):
    computer = computer_factory()
    done = computer.run("enroll", "--server", f"127.0.0.1:{free_port()}", "--user", "joe", "--machine", "X",
                        "--fingerprint", homesync_server.fingerprint, "--password-stdin", input="pw\n", timeout=30)
    _assert_one_line(done, 14, "cannot reach the backup server", "Connection refused")
    assert not (computer.home / ".config").exists()


def test_backup_before_enrolling(computer_factory):
    done = computer_factory().run("backup")
    _assert_one_line(done, 3, "not enrolled")


def test_wrong_password_on_restore_writes_nothing(homesync_server, computer_factory):
    computer = computer_factory()
    done = computer.run("restore", "--machine", "Joe's Thinkpad", *computer.remote_args(homesync_server, "joe"),
                        input="not-his-password\n")
    _assert_one_line(done, 12, "login failed")
    assert sorted(os.listdir(computer.home)) == []


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", ".", "a/../../b"])
def test_restore_paths_must_stay_inside_the_backup(homesync_server, computer_factory, path):
    computer = computer_factory()
    done = computer.run("restore", "--machine", "X", "--path", path, *computer.remote_args(homesync_server, "joe"),
                        input=PASSWORDS["joe"] + "\n")
    _assert_one_line(done, 2, "--path")


def test_a_password_never_appears_in_output_or_logs(homesync_server, computer_factory):
    computer = computer_factory()
    done = computer.run("enroll", "--server", homesync_server.address, "--user", "joe", "--machine", "Y",
                        "--fingerprint", homesync_server.fingerprint, "--password-stdin",
                        input="Sup3r-Secret-Typo\n")
    assert "Sup3r-Secret-Typo" not in done.stdout + done.stderr
    assert b"Sup3r-Secret-Typo" not in homesync_server.log.read_bytes()
    for index_file in homesync_server.data.glob("index.sqlite*"):
        assert b"Sup3r-Secret-Typo" not in index_file.read_bytes()


class ProcessWatch:
    """Reads every process's argv and environment on the machine, 50 times a second,
    and keeps those that hold one of the given secrets."""

    def __init__(self, *secrets: bytes) -> None:
        self.secrets, self.seen, self.sightings = secrets, set(), []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                for part in ("cmdline", "environ"):
                    try:
                        with open(f"/proc/{pid}/{part}", "rb") as f:
                            text = f.read()
                    except OSError:
                        continue
                    if part == "cmdline":
                        self.seen.add(b" ".join(text.split(b"\0")[:3]))
                    if any(s in text for s in self.secrets):
                        self.sightings.append((pid, part, text[:200]))
            time.sleep(0.02)


def test_no_password_or_passphrase_is_in_any_processs_argv_or_environment(fresh_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_bytes(os.urandom(1 << 20))
    password = PASSWORDS["joe"].encode()
    with ProcessWatch(password) as watch:
        laptop.enroll_and_back_up(fresh_server, "joe", "Watched")
        passphrase = (laptop.home / ".local/share/homesync/passphrase").read_bytes().strip()
        watch.secrets += (passphrase,)
        laptop.json("backup")
        new = computer_factory()
        new.json("restore", "--machine", "Watched", *new.remote_args(fresh_server, "joe"),
                 input=PASSWORDS["joe"] + "\n")
        drilled = fresh_server.cli("drill", "--machine", laptop.machine_id(), "--json")
        assert drilled.returncode == 0, drilled.stderr
    assert any(b"borg" in argv for argv in watch.seen), "the watch saw no borg at all"
    assert watch.sightings == []
