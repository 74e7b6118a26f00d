"""Damage to homesync's local state heals by itself at the next backup: borg's cache
(a file deleted, garbage written), the agent's state files and the queue of unreported
backups. Real server, real borg, the CLI as an unprivileged user."""

from __future__ import annotations

import json

import pytest

from tests.support.processes import chown_tree

CACHE = ".cache/homesync/borg"
STATE = ".local/state/homesync"


def _cache_dir(computer):
    """Return the one repository cache borg keeps for this computer."""
    caches = [p for p in (computer.home / CACHE).iterdir() if p.is_dir() and (p / "README").exists()]
    assert len(caches) == 1, caches
    return caches[0]


def _damage_config(cache):
    (cache / "config").unlink()


def _garbage(name):
    def damage(cache):
        (cache / name).write_bytes(b"\x00garbage\xff" * 64)
    return damage


@pytest.mark.parametrize("damage", [_damage_config, _garbage("config"), _garbage("chunks"), _garbage("files")],
                         ids=["config deleted", "config garbage", "chunks garbage", "files garbage"])
def test_a_damaged_borg_cache_is_rebuilt_by_the_next_backup(homesync_server, computer_factory, damage):
    laptop = computer_factory()
    (laptop.home / "notes.txt").write_text("first")
    laptop.enroll_and_back_up(homesync_server, "joe", f"Damaged cache {damage.__name__}{id(damage)}")
    damage(_cache_dir(laptop))
    (laptop.home / "notes.txt").write_text("second")
    chown_tree(laptop.home)
    healed = laptop.json("backup")
    assert healed["result"] in ("success", "warning") and healed["indexed"] is True
    # said once (this backup), and the one after it is clean and quiet
    again = laptop.json("backup")
    assert again["result"] == "success" and not any("cache" in w for w in again["warnings"])
    assert len(laptop.json("archives")) == 3
    if any("set aside" in w for w in healed["warnings"]):
        assert (laptop.home / ".cache/homesync/borg.damaged").is_dir()


def test_a_deleted_cache_config_is_named_in_status_once(homesync_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "joe", "Cache note laptop")
    _damage_config(_cache_dir(laptop))
    healed = laptop.json("backup")
    assert any("local borg cache was damaged" in w for w in healed["warnings"]), healed["warnings"]
    status = laptop.run("status")
    assert "cache was damaged" in status.stdout, status.stdout


@pytest.mark.parametrize("content", [b"{not json", b'{"a": 1}', b'[1, "x", {"name": 5}]'],
                         ids=["garbage", "not a list", "damaged entries"])
def test_a_damaged_queue_of_unreported_backups_is_set_aside_not_blocking(homesync_server, computer_factory,
                                                                         content):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "joe", f"Queue laptop {len(content)}")
    queue = laptop.home / STATE / "unreported.json"
    queue.write_bytes(content)
    chown_tree(laptop.home)
    done = laptop.json("backup")
    assert done["indexed"] is True  # the damaged entries do not hold up this report
    assert json.loads(queue.read_text()) == []
    assert (laptop.home / STATE / "unreported.json.damaged").exists()
    names = {a["name"] for a in laptop.json("archives")}
    assert done["name"] in names


@pytest.mark.parametrize("name", ["agent-state.json", "last-backup.json"])
def test_damaged_agent_state_files_do_not_stop_a_backup_or_status(homesync_server, computer_factory, name):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "joe", f"State laptop {name}")
    (laptop.home / STATE / name).write_bytes(b"\xff\xfe garbage")
    chown_tree(laptop.home)
    assert laptop.json("backup")["indexed"] is True
    assert laptop.run("status").returncode in (0, 5)  # 5: the agent is not running


def test_status_names_a_broken_config_instead_of_only_saying_not_running(homesync_server, computer_factory):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "joe", "Broken config laptop")
    config = laptop.home / ".config/homesync/config.toml"
    config.write_text(config.read_text() + "\n[agent]\nmax_age = \"soon\"\n")
    done = laptop.run("status")
    assert done.returncode == 3
    assert "config.toml" in done.stderr and "agent cannot run" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_damaged_last_backup_file_is_said_once_by_status_and_rebuilt_by_the_next_backup(homesync_server,
                                                                                          computer_factory):
    laptop = computer_factory()
    (laptop.home / "a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "joe", "Status file laptop")
    last = laptop.home / STATE / "last-backup.json"
    last.write_bytes(last.read_bytes()[:20])  # truncated
    first, second = laptop.run("status"), laptop.run("status")
    assert first.returncode == 5 and "last-backup.json was damaged" in first.stdout, first.stdout
    assert (laptop.home / STATE / "last-backup.json.damaged").exists()
    assert "damaged" not in second.stdout and "none on record" in second.stdout, second.stdout
    done = laptop.json("backup")
    assert json.loads(last.read_text())["name"] == done["name"]
    assert "damaged" not in laptop.run("status").stdout


def test_damaged_restore_state_files_are_set_aside_and_the_restore_is_whole(homesync_server, computer_factory):
    from tests.support.homesync_server import PASSWORDS
    laptop = computer_factory()
    (laptop.home / "Documents").mkdir()
    (laptop.home / "Documents/a.txt").write_text("a")
    laptop.enroll_and_back_up(homesync_server, "joe", "Restore state laptop")
    target = computer_factory()
    state = target.home / STATE
    state.mkdir(parents=True)
    (state / "restore-throughput.json").write_bytes(b'{"bytes_per_second": "fast"}')
    (state / "restore-progress.json").write_bytes(b'{"machine_id": "x", "done": ')  # truncated
    chown_tree(target.home)
    remote = [*target.remote_args(homesync_server, "joe"), "--machine", "Restore state laptop"]
    preview = target.run("restore", *remote, "--dry-run", input=PASSWORDS["joe"] + "\n")
    assert preview.returncode == 0, preview.stderr
    assert "restore-throughput.json was damaged" in preview.stdout and "an assumed" in preview.stdout, preview.stdout
    done = target.json("restore", *remote, input=PASSWORDS["joe"] + "\n")
    (note,) = done["warnings"]
    assert "restore-progress.json was damaged" in note and done["resumed"] == []
    assert (target.home / "Documents/a.txt").read_text() == "a"
    assert {p.name for p in state.glob("*.damaged")} == {"restore-throughput.json.damaged",
                                                         "restore-progress.json.damaged"}
