"""`homesync-server policy` as admins use it: invalid files are refused with one line
naming every problem and nothing stored; each change is a version in the history and
the audit log; groups come from a real slapd or from `policy group add`."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.homesync_server import start_server
from tests.support.processes import UNPRIVILEGED, private_dir, remove
from tests.support.slapd import ACCOUNT_FILTER, GROUPS_DN, PEOPLE_DN, running_slapd

INVALID = {
    "unknown key": ("[agent]\nbogus = 1\n", "[agent] unknown key 'bogus'"),
    "unknown table": ("[printer]\nmodel = 1\n", "unknown section [printer]"),
    "wrong type": ('[network]\nallow_metered = "no"\n', "[network] allow_metered must be a bool"),
    "bad duration": ('[agent]\nmax_age = "soon"\n', "[agent] max_age must be a duration"),
    "bad domain": ('[network]\ncorporate_domains = ["corp_example com"]\n',
                   "[network] corporate_domains must be a list of DNS domains"),
    "not toml": ("[agent\n", "not TOML"),
}


def _version(server) -> int:
    return server.cli_json("policy", "show")["version"]


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_policy_is_refused_and_nothing_is_stored(homesync_server, case):
    text, message = INVALID[case]
    before = _version(homesync_server)
    done = homesync_server.cli("policy", "set", "-", input=text)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "nothing was stored" in lines[0]
    assert _version(homesync_server) == before


def test_every_problem_in_one_line(homesync_server):
    done = homesync_server.cli("policy", "set", "-", input='[agent]\nbogus = 1\nmax_age = "soon"\n'
                                                           '[network]\ncorporate_domains = ["a b"]\n')
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1
    for message in ("unknown key 'bogus'", "max_age must be a duration", "corporate_domains must be"):
        assert message in done.stderr


def test_each_change_is_a_version_in_the_history_and_the_audit(homesync_server):
    before = _version(homesync_server)
    assert homesync_server.cli("policy", "set", "-", input='[agent]\nmax_age = "6h"\n').returncode == 0
    assert homesync_server.cli("policy", "set", "-", "--user", "ann",
                               input='[backup]\nupload_ratelimit = "5MiB/s"\n').returncode == 0
    same = homesync_server.cli("policy", "set", "-", "--user", "ann", input='[backup]\nupload_ratelimit = "5MiB/s"\n')
    assert "nothing changed" in same.stdout
    history = homesync_server.cli_json("policy", "history")
    assert [h["version"] for h in history[-2:]] == [before + 1, before + 2]
    assert history[-1]["scope"] == "user" and history[-1]["target"] == "ann"
    assert history[-1]["changed"] == ["backup.upload_ratelimit"] and history[-1]["actor"].startswith("admin:")
    audited = homesync_server.index_rows("SELECT detail FROM audit WHERE action = 'policy_set' ORDER BY id")
    assert json.loads(audited[-1][0])["version"] == before + 2
    shown = homesync_server.cli_json("policy", "show", "--user", "ann")
    assert shown["sources"]["backup.upload_ratelimit"] == "user ann" and shown["sources"]["agent.max_age"] == "site"


def test_local_users_in_groups(homesync_server):
    assert homesync_server.cli("policy", "set", "-", "--group", "lab",
                               input='[agent]\nnotifications = false\n').returncode == 0
    assert homesync_server.cli("policy", "group", "add", "lab", "joe").returncode == 0
    assert homesync_server.cli_json("policy", "show", "--user", "joe")["sources"]["agent.notifications"] == "group lab"
    assert "agent.notifications" not in homesync_server.cli_json("policy", "show", "--user", "ann")["sources"]
    assert homesync_server.cli("policy", "group", "remove", "lab", "joe").returncode == 0
    assert "agent.notifications" not in homesync_server.cli_json("policy", "show", "--user", "joe")["sources"]


def _ldap_identity(slapd, password_file) -> str:
    return f'''[identity]
backend = "ldap"
urls = ["{slapd.url}"]
bind_dn = "{slapd.service_dn}"
bind_password_file = "{password_file}"
user_base = "{PEOPLE_DN}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
account_filter = "{ACCOUNT_FILTER}"
group_base = "{GROUPS_DN}"
timeout = 2.0
'''


def test_groups_from_the_directory_and_remembered_while_it_is_down(tmp_path_factory, computer_factory):
    secret_dir = private_dir("hs-ldap-secret-")
    server = None
    try:
        with running_slapd(tmp_path_factory.mktemp("slapd")) as slapd:
            password_file = slapd.write_password_file(secret_dir / "ldap-password")
            os.chown(password_file, UNPRIVILEGED, UNPRIVILEGED)
            server = start_server(users={}, identity=_ldap_identity(slapd, password_file))
            for group, value in (("homesync-admins", '"2h"'), ("homesync-admins-posix", '"3h"')):
                done = server.cli("policy", "set", "-", "--group", group, input=f"[agent]\nmax_age = {value}\n")
                assert done.returncode == 0, done.stderr
            ann = server.cli_json("policy", "show", "--user", "ann")  # groupOfNames member
            bob = server.cli_json("policy", "show", "--user", "bob")  # posixGroup memberUid
            assert ann["groups"] == ["homesync-admins"] and ann["sources"]["agent.max_age"] == "group homesync-admins"
            assert bob["groups"] == ["homesync-admins-posix"] and bob["values"]["agent.max_age"] == "3h"
            assert server.cli_json("policy", "show", "--user", "joe")["groups"] == []
            # precedence with the directory's groups: site < group < user < machine
            assert server.cli("policy", "set", "-", input='[agent]\nmax_age = "1h"\n').returncode == 0
            joe = server.cli_json("policy", "show", "--user", "joe")
            assert (joe["values"]["agent.max_age"], joe["sources"]["agent.max_age"]) == ("1h", "site")
            assert server.cli_json("policy", "show", "--user", "ann")["sources"]["agent.max_age"] == \
                "group homesync-admins"
            assert server.cli("policy", "set", "-", "--user", "ann", input='[agent]\nmax_age = "4h"\n').returncode == 0
            ann = server.cli_json("policy", "show", "--user", "ann")
            assert (ann["values"]["agent.max_age"], ann["sources"]["agent.max_age"]) == ("4h", "user ann")
            # ... < machine: ann's computer, enrolled with her directory password
            desk = computer_factory()
            done = desk.run("enroll", "--server", server.address, "--user", "ann", "--machine", "Ann's desk",
                            "--fingerprint", server.fingerprint, "--password-stdin", input="ann-secret\n")
            assert done.returncode == 0, done.stderr
            machine = desk.machine_id()
            shown = server.cli_json("policy", "show", "--machine", machine)  # what policy.get answers that machine
            assert shown["groups"] == ["homesync-admins"]
            assert (shown["values"]["agent.max_age"], shown["sources"]["agent.max_age"]) == ("4h", "user ann")
            done = server.cli("policy", "set", "-", "--machine", machine, input='[agent]\nmax_age = "5h"\n')
            assert done.returncode == 0, done.stderr
            shown = server.cli_json("policy", "show", "--machine", machine)
            assert (shown["values"]["agent.max_age"], shown["sources"]["agent.max_age"]) == ("5h", f"machine {machine}")
            assert server.cli_json("policy", "show", "--user", "ann")["values"]["agent.max_age"] == "4h"
        # the directory is down: the groups last read still apply
        assert server.cli_json("policy", "show", "--user", "ann")["groups"] == ["homesync-admins"]
    finally:
        if server is not None:
            server.stop()
            remove(server.data.parent)
        remove(secret_dir)


def test_policy_edit_stores_a_valid_edit_and_refuses_an_invalid_one(homesync_server):
    editor = homesync_server.data.parent / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf \'[agent]\\nmax_age = "%s"\\n\' "$AGE" >> "$1"\n')
    editor.chmod(0o755)
    from tests.support.processes import VENV_BIN, run_as_user
    def edit(age: str):
        return run_as_user([str(VENV_BIN / "homesync-server"), "policy", "edit", "--group", "editors",
                            "--data", str(homesync_server.data)], homesync_server.data.parent,
                           EDITOR=str(editor), AGE=age)
    before = _version(homesync_server)
    done = edit("9h")
    assert done.returncode == 0, done.stderr
    assert homesync_server.cli_json("policy", "show", "--group", "editors")["values"]["agent.max_age"] == "9h"
    bad = edit("whenever")  # appended a second max_age: not TOML, refused
    assert bad.returncode == 3 and _version(homesync_server) == before + 1


def test_the_report_flags_machines_not_following_the_newest_version(homesync_server, computer_factory):
    import sqlite3
    import time
    computer = computer_factory()
    (computer.home / "a.txt").write_text("a")
    computer.enroll_and_back_up(homesync_server, "ann", "Ann's desk")
    machine_id = computer.machine_id()
    assert homesync_server.cli("policy", "set", "-", input='[agent]\nmax_age = "5h"\n').returncode == 0
    newest = _version(homesync_server)
    # the version was made two days ago, and the machine has reached the server since, still on version 0
    db = sqlite3.connect(homesync_server.data / "index.sqlite")
    with db:
        db.execute("UPDATE policy_versions SET at = ? WHERE version = ?", (time.time() - 2 * 86400, newest))
        db.execute("UPDATE machines SET last_seen = ? WHERE id = ?", (time.time() - 3600, machine_id))
    db.close()
    done = homesync_server.cli("report", "--format", "json")
    part = json.loads(done.stdout)["fleet_policy"]
    assert part["newest_version"] == newest and part["applied_versions"][machine_id] == 0
    assert [m["id"] for m in part["lagging"]] == [machine_id]
    table = homesync_server.cli("report").stdout
    assert f"not applied within a day of reaching the server: {machine_id} runs version 0" in table
    assert f"<td>{machine_id}</td>" in homesync_server.cli("report", "--format", "html").stdout
    import csv
    import io
    [row] = list(csv.DictReader(io.StringIO(homesync_server.cli("report", "--format", "csv").stdout)))
    assert (row["machine_id"], row["policy_version"], row["policy_lagging"]) == (machine_id, "0", "True")
