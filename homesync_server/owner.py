"""Admin commands run as the data directory's owner: run as root, a command becomes that
user before it touches anything, so that no file it writes (a repository segment, the
index, a borg cache entry, a drill's scratch) is one the server cannot read and write."""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

from homesync_server.config import Layout

log = logging.getLogger(__name__)

# Commands that only read, and so may run as anyone the modes let read (a monitoring
# user in the owner's group, say); every other command writes.
READ_ONLY_COMMANDS = frozenset({"report", "metrics", "audit", "fingerprint", "machines", "doctor", "nodes"})


def owner_name(uid: int) -> str:
    """Return the user name of uid, or the number where no account has it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def run_as_data_owner(layout: Layout, command: str, writes: bool = True) -> str | None:
    """Given the data directory and the command about to run, become its owner when
    running as root; return the line refusing a writing command run by anyone else
    (the caller exits WRONG_USER with it), else None. A data directory that does not
    exist yet (init) is left to whoever creates it."""
    try:
        st = _nearest_stat(layout.data)
    except FileNotFoundError:
        return None
    euid = os.geteuid()
    if st.st_uid == euid:
        return None
    if euid == 0:
        os.environ.setdefault("SUDO_USER", "root")  # audit events still name who ran it (admin_actor)
        become(st.st_uid, st.st_gid)
        return None
    if not writes:
        return None
    name = owner_name(st.st_uid)
    return (f"{layout.data} belongs to {name}, and `{command}` must run as its owner "
            f"(run it as root or as {name}: sudo -u {name} homesync-server {command} ...)")


def _nearest_stat(path: Path) -> os.stat_result:
    """Return the stat of path or, where a private directory above it hides it from us,
    of that directory (whose owner is the one to run as)."""
    try:
        return os.stat(path)
    except PermissionError:
        for parent in path.parents:
            try:
                return os.stat(parent)
            except PermissionError:
                continue
        raise


def become(uid: int, gid: int) -> None:
    """Drop root for good: take uid's groups, gid and uid, and its HOME and USER."""
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        account = None
    groups = os.getgrouplist(account.pw_name, gid) if account else [gid]
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    if account:
        os.environ.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    log.debug("running as %s (uid %d, gid %d)", account.pw_name if account else uid, uid, gid)
