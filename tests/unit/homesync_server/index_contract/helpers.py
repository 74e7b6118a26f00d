"""Rows the contract tests write, the same on every engine."""

from __future__ import annotations

from homesync_server.index import event

MACHINE = "a" * 16
OTHER = "b" * 16


def machine(id_: str = MACHINE, name: str = "Joe's Thinkpad", owner: str = "joe") -> dict:
    return {"id": id_, "owner": owner, "name": name, "hostname": "h", "public_key": f"ssh-ed25519 {id_}",
            "enrolled": 1.0}


def enrolled(index, id_: str = MACHINE, name: str = "Joe's Thinkpad", owner: str = "joe") -> str:
    index.record_user(owner)
    index.add_machine(machine(id_, name, owner), name.lower(), event("enroll", owner, id_))
    return id_


def archive(name: str = "a", end: float = 20.0, result: str = "success", **more) -> dict:
    return dict({"name": name, "start": end - 10, "end": end, "files": 3, "original_size": 100,
                 "compressed_size": 90, "deduplicated_size": 50, "result": result}, **more)
