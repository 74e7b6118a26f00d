"""What a session may call through borg serve: an agent (machine key) may only add, a
template or restore session may only read. Each attack is refused with a clear error,
audited, leaves no lock, and the history (key, archives, objects) stays intact."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import msgpack
import pytest

from homesync import borg, shim, transport
from homesync.errors import BorgError
from tests.support.homesync_client import Computer
from tests.support.homesync_server import PASSWORDS
from tests.support.processes import UNPRIVILEGED, VENV_BIN, chown_tree, private_dir, remove, user_env
from tests.end_to_end.test_interrupted_backup import _client_borg_pids
from tests.support.trees import make_home

MANIFEST = bytes(32)


class RawBorg:
    """A hand-made borg RPC client on an exec channel (what an attacker would write)."""

    def __init__(self, server, user: str, key) -> None:
        self.session = transport.Session.connect(server.address, server.fingerprint, user, key=key)
        self.channel = self.session.exec("borg serve", timeout=60)
        self.unpacker = msgpack.Unpacker(raw=True, use_list=False)
        self.msgid = 0

    def call(self, method: str, **args) -> dict:
        """Send one call and return borg serve's answer to it (or the refusal)."""
        self.msgid += 1
        self.channel.sendall(msgpack.packb({b"i": self.msgid, b"m": method.encode(),
                                            b"a": {k.encode(): v for k, v in args.items()}}, use_bin_type=False))
        while True:
            for message in self.unpacker:
                if message.get(b"i") == self.msgid:
                    return message
            data = self.channel.recv(1 << 20)
            if not data:
                return {b"closed": True}
            self.unpacker.feed(data)

    def open(self, repo_id: str, exclusive: bool = True) -> None:
        assert b"r" in self.call("negotiate", client_data={b"client_version": (1, 4, 5)})
        assert b"r" in self.call("open", path=f"/./{repo_id}".encode(), exclusive=exclusive, lock=True,
                                 lock_wait=30)

    def close(self) -> None:
        self.session.close()


def refused(answer: dict, method: str) -> bool:
    return answer.get(b"exception_class") == b"Error" and \
        f"homesync refused {method}".encode() in answer.get(b"exception_short", (b"",))[0]


@pytest.fixture(scope="module")
def laptop(homesync_server):
    """joe's computer with two backups."""
    computer = Computer(private_dir("hs-rpc-"))
    make_home(computer.home, seed=71, files=80, total_bytes=2 << 20)
    computer.enroll_and_back_up(homesync_server, "joe", "Joe's Filtered Box")
    (computer.home / "second.txt").write_text("second backup\n")
    chown_tree(computer.home)
    computer.json("backup")
    yield computer
    remove(computer.home)


def _env(server, key_file, base) -> borg.BorgEnvironment:
    return borg.BorgEnvironment(base_dir=base, rsh=shim.rsh_command(), extra={
        shim.ENV_FINGERPRINT: server.fingerprint, shim.ENV_KEY_FILE: str(key_file)})


def _location(server, repo_id: str) -> str:
    host, port = server.address.rsplit(":", 1)
    return f"ssh://{repo_id}@{host}:{port}/./{repo_id}"


def _machine(server, computer, tmp_path):
    """Return (location, environment, passphrase) of the computer's own borg access."""
    machine_id = computer.machine_id()
    env = _env(server, computer.home / ".local/share/homesync/machine_key", tmp_path / "borg")
    return _location(server, machine_id), env, (computer.home / ".local/share/homesync/passphrase").read_bytes()


def _archives(location, env, passphrase, *options: str) -> list[str]:
    argv = borg.make_list_archives_command(location)
    listed = borg.run_borg((*argv[:-1], *options, argv[-1]), env, passphrase, timeout=60)
    return [a["name"] for a in listed.json["archives"]]


def _repo_state(server, repo_id: str, kind: str = "repos") -> bytes:
    return (server.data / kind / repo_id / "config").read_bytes()


def _audited(server, method: str) -> int:
    return server.index_rows(f"SELECT COUNT(*) FROM audit WHERE action = 'borg_call_refused' "
                             f"AND detail LIKE '%\"method\": \"{method}\"%'")[0][0]


def _machine_key(computer):
    return transport.load_key(computer.home / ".local/share/homesync/machine_key")


def test_an_agent_cannot_change_the_passphrase(homesync_server, laptop, tmp_path):
    location, env, passphrase = _machine(homesync_server, laptop, tmp_path)
    before = _archives(location, env, passphrase)
    env.extra["BORG_NEW_PASSPHRASE"] = "ransom-passphrase-xyz"
    with pytest.raises(BorgError, match="homesync refused save_key"):
        borg.run_borg((borg.borg_executable(), "key", "change-passphrase", "--log-json", location), env, passphrase,
                      timeout=60)
    del env.extra["BORG_NEW_PASSPHRASE"]
    assert len(before) == 2 and _archives(location, env, passphrase) == before  # right after: no lock left
    assert _audited(homesync_server, "save_key") >= 1


def test_an_agent_cannot_overwrite_the_key(homesync_server, laptop, tmp_path):
    machine_id = laptop.machine_id()
    config = _repo_state(homesync_server, machine_id)
    raw = RawBorg(homesync_server, machine_id, _machine_key(laptop))
    try:
        raw.open(machine_id)
        assert refused(raw.call("save_key", keydata=b"garbage"), "save_key")
    finally:
        raw.close()
    assert _repo_state(homesync_server, machine_id) == config
    location, env, passphrase = _machine(homesync_server, laptop, tmp_path)
    assert len(_archives(location, env, passphrase)) == 2


def test_an_agent_cannot_overwrite_an_existing_object(homesync_server, laptop, tmp_path):
    machine_id = laptop.machine_id()
    raw = RawBorg(homesync_server, machine_id, _machine_key(laptop))
    try:
        raw.open(machine_id)
        ids = raw.call("list", limit=1000, marker=None)[b"r"]
        victim = next(i for i in ids if i != MANIFEST)
        assert refused(raw.call("put", id=victim, data=bytes(64)), "put")
        assert b"exception_class" in raw.call("commit", save_space=False)  # nothing after a refusal reaches borg
    finally:
        raw.close()
    location, env, passphrase = _machine(homesync_server, laptop, tmp_path)
    for name in _archives(location, env, passphrase):
        target = tmp_path / name
        target.mkdir()
        borg.run_borg(borg.make_extract_command(location, name, progress=False), env, passphrase,
                      cwd=str(target), timeout=120)
        compared = 0
        for path in (laptop.home / "Documents").rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert (target / path.relative_to(laptop.home)).read_bytes() == path.read_bytes()
                compared += 1
        assert compared > 10


def test_an_agent_cannot_delete_archives(homesync_server, laptop, tmp_path):
    location, env, passphrase = _machine(homesync_server, laptop, tmp_path)
    before = _archives(location, env, passphrase)
    with pytest.raises(BorgError, match="homesync refused delete"):
        borg.run_borg((borg.borg_executable(), "delete", "--log-json", "--glob-archives", "*", location), env,
                      passphrase, timeout=60)
    assert _archives(location, env, passphrase) == before and len(before) == 2
    assert _audited(homesync_server, "delete") >= 1


def test_after_refusals_backups_and_checkpoints_still_work(homesync_server, laptop, tmp_path):
    laptop.json("backup")
    # a backup that checkpoints every second deletes its own checkpoint archives as it goes
    (laptop.home / "Videos").mkdir(exist_ok=True)
    for i in range(4):
        (laptop.home / f"Videos/clip-{i}.raw").write_bytes(os.urandom(24 << 20))
    chown_tree(laptop.home)
    location, env, passphrase = _machine(homesync_server, laptop, tmp_path)
    argv = [a if a != "300" else "1" for a in borg.make_create_command(location, "checkpointed", (), progress=False)]
    borg.run_borg(argv, env, passphrase, cwd=str(laptop.home), timeout=300)
    assert "checkpointed" in _archives(location, env, passphrase)


def test_an_interrupted_backup_then_a_normal_one(homesync_server, laptop, tmp_path):
    (laptop.home / "Videos").mkdir(exist_ok=True)
    for i in range(6):
        (laptop.home / f"Videos/more-{i}.raw").write_bytes(os.urandom(32 << 20))
    chown_tree(laptop.home)
    repo = homesync_server.data / "repos" / laptop.machine_id()
    stored = _stored(repo)
    backup = subprocess.Popen([str(VENV_BIN / "homesync"), "backup"], env=user_env(laptop.home), cwd=laptop.home,
                              user=UNPRIVILEGED, group=UNPRIVILEGED, extra_groups=[], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _stored(repo) < stored + (40 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = _client_borg_pids(laptop.home)
    assert pids, "borg never started"
    for pid in pids:
        os.kill(pid, signal.SIGINT)  # borg writes a checkpoint archive and stops
    _, stderr = backup.communicate(timeout=120)
    location, env, passphrase = _machine(homesync_server, laptop, tmp_path)
    assert any(name.endswith(".checkpoint")
               for name in _archives(location, env, passphrase, "--consider-checkpoints")), stderr
    assert laptop.json("backup")["result"] == "success"


def _stored(repo) -> int:
    return sum(f.stat().st_size for f in (repo / "data").rglob("*") if f.is_file())


def _template(server, tmp_path):
    base = private_dir("hs-template-")
    make_home(base / "home", seed=73, files=40, total_bytes=1 << 20)
    chown_tree(base)
    published = server.cli_json("template", "publish", "Filtered Lab", "--from", str(base / "home"))
    remove(base)
    one_off = transport.new_key()
    one_off.save(tmp_path / "key")
    with transport.Session.connect(server.address, server.fingerprint, "ann", password=PASSWORDS["ann"]) as session:
        grant = session.rpc().call("template.grant", name="Filtered Lab",
                                   public_key=transport.public_key_line(one_off.pkey))
    return published, grant, one_off


def test_a_template_session_cannot_write(homesync_server, computer_factory, tmp_path):
    published, grant, one_off = _template(homesync_server, tmp_path)
    template_id = grant["template"]["id"]
    config = _repo_state(homesync_server, template_id, "templates")
    raw = RawBorg(homesync_server, template_id, one_off.pkey)
    try:
        raw.open(template_id)
        assert refused(raw.call("save_key", keydata=b""), "save_key")
    finally:
        raw.close()
    assert _repo_state(homesync_server, template_id, "templates") == config
    env = _env(homesync_server, tmp_path / "key", tmp_path / "borg")
    location = _location(homesync_server, template_id)
    with pytest.raises(BorgError, match="homesync refused"):
        borg.run_borg(borg.make_delete_command(location, [published["archive"]]), env, grant["passphrase"],
                      timeout=60)
    assert _archives(location, env, grant["passphrase"]) == [published["archive"]]
    new = computer_factory()
    done = new.run("restore", "--template", "Filtered Lab", *new.remote_args(homesync_server, "joe"),
                   input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr


def test_a_restore_session_cannot_write(homesync_server, laptop, tmp_path):
    machine_id = laptop.machine_id()
    one_off = transport.new_key()
    one_off.save(tmp_path / "key")
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, "joe",
                                   password=PASSWORDS["joe"]) as session:
        grant = session.rpc().call("restore.grant", machine_id=machine_id,
                                   public_key=transport.public_key_line(one_off.pkey))
    env = _env(homesync_server, tmp_path / "key", tmp_path / "borg")
    location = _location(homesync_server, machine_id)
    before = _archives(location, env, grant["passphrase"])
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    (rogue / "x.txt").write_text("not a backup\n")
    with pytest.raises(BorgError, match="homesync refused"):
        borg.run_borg(borg.make_create_command(location, "rogue", (), progress=False), env, grant["passphrase"],
                      cwd=str(rogue), timeout=60)
    raw = RawBorg(homesync_server, machine_id, one_off.pkey)
    try:
        raw.open(machine_id)
        assert refused(raw.call("put", id=os.urandom(32), data=b"x"), "put")
    finally:
        raw.close()
    assert _archives(location, env, grant["passphrase"]) == before
    laptop.json("backup")
