"""What admins asked for on first use: machines named by display name and owner as well
as by id, `user passwd` (never from argv), `user remove` (refused while the user has
active machines, unless they are retired with it), `template remove`."""

from __future__ import annotations

import json

from homesync_server.identity.local import LocalIdentity
from tests.support.processes import private_dir
from tests.support.repositories import enrolled_with_backups


def test_a_machine_is_named_by_its_display_name_and_owner(fresh_server, computer_factory):
    server = fresh_server
    joes, _, _ = enrolled_with_backups(server, computer_factory, "joe", "Lab PC", 71)
    anns, _, _ = enrolled_with_backups(server, computer_factory, "ann", "Lab PC", 72)

    held = server.cli_json("hold", "add", "--machine", "lab pc", "--user", "joe", "--all")
    assert held["machine_id"] == joes
    assert [h["machine_id"] for h in server.cli_json("hold", "list", "--machine", "Lab PC", "--user", "joe")] == [joes]
    ambiguous = server.cli("hold", "remove", "--machine", "Lab PC", "--all")
    assert ambiguous.returncode == 4 and "--user" in ambiguous.stderr and "joe" in ambiguous.stderr
    unknown = server.cli("machine", "retire", "--machine", "No Such PC", "--user", "joe")
    assert unknown.returncode == 10 and "No Such PC" in unknown.stderr
    renamed = server.cli_json("machine", "rename", "--machine", "Lab PC", "--user", "ann", "--name", "Ann's Desk")
    assert renamed["id"] == anns and renamed["name"] == "Ann's Desk"
    (drilled,) = server.cli_json("drill", "--machine", "Ann's Desk", "--user", "ann")
    assert drilled["machine_id"] == anns and drilled["result"] == "passed"
    (pruned,) = server.cli_json("prune", "--machine", "Ann's Desk", "--user", "ann", "--dry-run")
    assert pruned["machine_id"] == anns
    assert server.cli_json("hold", "add", "--machine", joes, "--all")["machine_id"] == joes  # ids still work


def test_user_passwd_takes_the_password_from_stdin_only(fresh_server):
    server = fresh_server
    changed = server.cli("user", "passwd", "joe", "--password-stdin", input="a-new-joe-pw\n")
    assert changed.returncode == 0, changed.stderr
    users = LocalIdentity(server.data / "users.json")
    assert users.authenticate("joe", "a-new-joe-pw").name == "joe"
    assert server.cli("user", "passwd", "joe", "a-new-joe-pw").returncode == 2  # no password in argv
    assert server.cli("user", "passwd", "nobody-here", "--password-stdin", input="x-pw-x\n").returncode == 10
    events = server.index_rows("SELECT action, detail FROM audit WHERE action = 'user_passwd'")
    assert [json.loads(d)["user"] for _, d in events] == ["joe"]


def test_user_remove_refuses_while_the_user_has_active_machines(fresh_server, computer_factory):
    server = fresh_server
    machine_id, _, _ = enrolled_with_backups(server, computer_factory, "joe", "Joe's Old", 73)
    refused = server.cli("user", "remove", "joe")
    assert refused.returncode == 4 and "Joe's Old" in refused.stderr and "--retire-machines" in refused.stderr
    removed = server.cli_json("user", "remove", "joe", "--retire-machines")
    assert removed == {"user": "joe", "retired": [machine_id]}
    assert LocalIdentity(server.data / "users.json").lookup("joe") is None
    assert {m["id"]: m["state"] for m in server.cli_json("machines")}[machine_id] == "retired"
    assert server.cli_json("user", "remove", "ann") == {"user": "ann", "retired": []}
    assert server.cli("user", "remove", "ann").returncode == 10


def test_template_remove(fresh_server):
    server = fresh_server
    home = private_dir("hs-template-home-")
    (home / "readme.txt").write_text("welcome")
    server.cli_json("template", "publish", "Kiosk", "--from", str(home))
    assert [t["name"] for t in server.cli_json("template", "list")] == ["Kiosk"]
    removed = server.cli_json("template", "remove", "kiosk")
    assert removed["name"] == "Kiosk"
    assert server.cli_json("template", "list") == []
    assert server.cli("template", "remove", "Kiosk").returncode == 10
