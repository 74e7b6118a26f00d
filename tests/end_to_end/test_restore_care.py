"""Restores and adopts that neither lose settings nor mislead: an adopt keeps the new
computer's own settings, a clone's name clash is found before anything is restored, the
preview of an adopt works and says what would happen in whole sentences, and a template
never loosens the home directory's own mode."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

from tests.support.homesync_server import PASSWORDS
from tests.support.processes import chown_tree, private_dir, remove
from tests.support.trees import snapshot

SETTINGS = """# my own settings, written before this computer was set up
[network]
corporate_domains = ["corp.example.com"]
allow_metered = true

[agent]
max_age = "6h"
"""


def _outside_own(home):
    """Return a snapshot of home without homesync's own directories (and home itself,
    whose mtime changes when borg creates ~/.cache/homesync)."""
    tree = snapshot(home, exclude=(".cache", ".config", ".local"))
    tree.pop(b".", None)
    return tree


def _backed_up(server, computer_factory, name):
    old = computer_factory()
    (old.home / "notes.txt").write_text("from the old computer")
    old.enroll_and_back_up(server, "joe", name)
    return old


def test_adopt_keeps_the_settings_already_in_config_toml(fresh_server, computer_factory):
    _backed_up(fresh_server, computer_factory, "Settings laptop")
    new = computer_factory()
    config = new.home / ".config/homesync/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(SETTINGS)
    chown_tree(new.home)
    result = new.json("restore", "--machine", "Settings laptop", "--adopt", *new.remote_args(fresh_server, "joe"),
                      input=PASSWORDS["joe"] + "\n")
    assert result["adopted"] == "Settings laptop"
    text = config.read_text()
    assert 'corporate_domains = ["corp.example.com"]' in text and 'max_age = "6h"' in text
    assert "# my own settings" in text
    assert new.json("backup")["result"] == "success"  # the merged file is a valid, enrolled config


def test_a_clone_name_clash_is_refused_before_anything_is_restored(fresh_server, computer_factory):
    _backed_up(fresh_server, computer_factory, "Clash A")
    _backed_up(fresh_server, computer_factory, "Clash B")
    clone = computer_factory()
    before = snapshot(clone.home)
    done = clone.run("restore", "--machine", "Clash A", "--as-new", "clash b", *clone.remote_args(fresh_server, "joe"),
                     input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 4 and "already have a computer named 'Clash B'" in done.stderr, done.stderr
    assert snapshot(clone.home) == before  # nothing restored, nothing enrolled


def test_the_preview_of_an_adopt_works_and_ends_its_sentences(fresh_server, computer_factory):
    _backed_up(fresh_server, computer_factory, "Preview laptop")
    new = computer_factory()
    before = _outside_own(new.home)
    done = new.run("restore", "--machine", "Preview laptop", "--adopt", "--dry-run",
                   *new.remote_args(fresh_server, "joe"), input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr
    assert "no restore was measured here yet" in done.stdout
    assert "would become 'Preview laptop'" in done.stdout
    assert not any(line.rstrip().endswith(("assuming", ",")) for line in done.stdout.splitlines())
    assert _outside_own(new.home) == before  # borg may make homesync's own cache; nothing else
    assert not (new.home / ".config/homesync/config.toml").exists()


def test_a_template_never_loosens_the_home_directorys_mode(homesync_server, computer_factory):
    base = private_dir("hs-template-mode-")
    published_home = base / "home"
    published_home.mkdir()
    (published_home / "welcome.txt").write_text("welcome")
    os.chmod(published_home, 0o755)
    chown_tree(base)
    homesync_server.cli_json("template", "publish", "Open Home", "--from", str(published_home))
    new = computer_factory()
    os.chmod(new.home, 0o700)
    done = new.run("restore", "--template", "Open Home", *new.remote_args(homesync_server, "joe"),
                   input=PASSWORDS["joe"] + "\n")
    assert done.returncode == 0, done.stderr
    assert (new.home / "welcome.txt").read_text() == "welcome"
    assert stat.S_IMODE(os.stat(new.home).st_mode) == 0o700
    remove(base)


def test_a_backup_the_index_names_but_the_repository_lacks_is_passed_over(fresh_server, computer_factory):
    # the restore takes the newest backup from the server's index (no borg run); where the
    # repository no longer holds it (rolled back, deleted by hand), the repository's own
    # newest is restored instead, and nothing of the missing one is reported as restored
    _backed_up(fresh_server, computer_factory, "Gone laptop")
    (machine_id, real), = fresh_server.index_rows("SELECT a.machine_id, a.name FROM archives a JOIN machines m "
                                                  "ON m.id = a.machine_id WHERE m.name = 'Gone laptop'")
    with sqlite3.connect(fresh_server.data / "index.sqlite") as db:
        db.execute("INSERT INTO archives (machine_id, name, start, \"end\", files, original_size, compressed_size, "
                   "deduplicated_size, result) SELECT machine_id, 'vanished', start + 60, \"end\" + 60, files, "
                   "original_size, compressed_size, deduplicated_size, result FROM archives WHERE machine_id = ?",
                   (machine_id,))
    db.close()
    new = computer_factory()
    result = new.json("restore", "--machine", "Gone laptop", *new.remote_args(fresh_server, "joe"),
                      input=PASSWORDS["joe"] + "\n")
    assert result["archive"] == real and (new.home / "notes.txt").read_text() == "from the old computer"
    restores = fresh_server.index_rows("SELECT action, detail FROM audit WHERE action LIKE 'restore%' "
                                       "AND action != 'restore_grant' ORDER BY id")
    assert [(action, json.loads(detail)["archive"]) for action, detail in restores] == [("restore", real)], restores
