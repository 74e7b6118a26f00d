"""A Landlock sandbox for running a program on untrusted input (a drill's borg extract):
it may read everywhere but write, create, rename or remove only beneath the directories
it is given, make no device node, open no TCP connection, write no file over a limit.

Run as `python -m homesync_server.sandbox --write DIR ... [--max-file-size N] -- ARGV`:
it restricts itself, then execs ARGV. Without Landlock it refuses (exit 2), never runs
ARGV unconfined.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import sys
from typing import Sequence

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every Linux architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Access rights by the ABI version that introduced them; reads and execution are not
# handled, so they stay allowed everywhere.
_WRITE_FILE, _MAKE_CHAR, _MAKE_BLOCK, _TRUNCATE, _IOCTL_DEV = 1 << 1, 1 << 6, 1 << 11, 1 << 14, 1 << 15
_FS_WRITES = {1: _WRITE_FILE | sum(1 << bit for bit in range(4, 13)),  # remove dir/file, make char…sym
              2: 1 << 13,    # refer (link or rename into another directory)
              3: _TRUNCATE,
              5: _IOCTL_DEV}
_NET_TCP = {4: 0b11}        # bind, connect
_SCOPES = {6: 0b11}         # abstract unix sockets, signals
SAFE_FILES = ("/dev/null",)  # written to by libraries, never a place to leave data


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class SandboxUnavailable(OSError):
    """The kernel cannot confine a process (no Landlock, or it is disabled)."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """Return the kernel's Landlock ABI version, 0 when it has none or it is disabled."""
    version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def _rights(table: dict[int, int], abi: int) -> int:
    return sum(bits for version, bits in table.items() if version <= abi)


def restrict(writable: Sequence[str], max_file_size: int = 0) -> int:
    """Confine this process and what it execs: writes only beneath writable, no TCP, no
    file bigger than max_file_size (0: no limit). Return the ABI version used. Raise
    SandboxUnavailable without Landlock, OSError if a directory cannot be opened."""
    abi = abi_version()
    if abi < 1:
        raise SandboxUnavailable("this kernel has no Landlock (Linux 5.13 or later, with landlock in the LSM list)")
    libc = _libc()
    attr = _RulesetAttr(_rights(_FS_WRITES, abi), _rights(_NET_TCP, abi), _rights(_SCOPES, abi))
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels refuse fields they do not know
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise SandboxUnavailable(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for path in writable:  # never a device node: handled, so refused everywhere
            _allow(libc, ruleset, path, attr.handled_access_fs & ~(_MAKE_CHAR | _MAKE_BLOCK))
        for path in SAFE_FILES:
            if os.path.exists(path):
                _allow(libc, ruleset, path, attr.handled_access_fs & (_WRITE_FILE | _TRUNCATE | _IOCTL_DEV))
        if max_file_size:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), kills nothing
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
                libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise SandboxUnavailable(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule: {os.strerror(ctypes.get_errno())}", path)
    finally:
        os.close(fd)


def make_sandboxed_command(argv: Sequence[str], writable: Sequence[str], max_file_size: int = 0) -> tuple[str, ...]:
    """Given argv and the directories it may write beneath, return argv running it in
    this sandbox (with this Python)."""
    wrapper = [sys.executable, "-m", "homesync_server.sandbox"]
    for path in writable:
        wrapper += ["--write", str(path)]
    if max_file_size:
        wrapper += ["--max-file-size", str(max_file_size)]
    return (*wrapper, "--", *argv)


def main(args: Sequence[str] | None = None) -> int:
    """Restrict this process as the arguments say, then exec the program; return 2
    (having said why, as a borg --log-json line) if it cannot be confined."""
    parser = argparse.ArgumentParser(prog="homesync-sandbox")
    parser.add_argument("--write", action="append", default=[], metavar="DIR")
    parser.add_argument("--max-file-size", type=int, default=0, metavar="BYTES")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    argv = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
    if not argv:
        parser.error("no program to run after --")
    try:
        restrict(options.write, options.max_file_size)
        os.execv(argv[0], argv)
    except OSError as e:
        print(json.dumps({"type": "log_message", "levelname": "ERROR", "name": "homesync.sandbox",
                          "message": f"sandbox: not running {os.path.basename(argv[0])}: {e}"}), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
