"""`make demo`: the main job end to end on embedded defaults. A server on loopback,
"Joe's Thinkpad" enrolled with a generated home, backed up, changed, backed up again,
thrown out of the window, and restored onto new hardware: proven bit-identical."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.processes import (UNPRIVILEGED, VENV_BIN, chown_tree, free_port,  # noqa: E402
                                     private_dir, run_as_user, user_env)
from tests.support.homesync_client import Computer  # noqa: E402
from tests.support.trees import diff_snapshots, make_home, mutate_home, snapshot  # noqa: E402

MACHINE = "Joe's Thinkpad"
NOT_BACKED_UP = (".config/homesync", ".local/share/homesync", ".local/state/homesync", ".cache",
                 ".local/share/Trash")


def step(text: str) -> float:
    print(f"\n== {text}", flush=True)
    return time.monotonic()


def done(started: float, what: str = "") -> None:
    print(f"   {what}({time.monotonic() - started:.1f} s)", flush=True)


SERVER_LOG: list[Path] = []


def run(argv: list[str], home: Path, input: str | None = None) -> subprocess.CompletedProcess:
    result = run_as_user(argv, home, input=input, timeout=900)
    if result.returncode != 0:
        for log in SERVER_LOG:  # what the server saw, for whoever reads a failed demo
            print("--- the server's log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        sys.exit(f"demo: {' '.join(argv[:2])} failed: {result.stderr.strip()}")
    return result


def main() -> int:
    base = private_dir("homesync-demo-")
    server_home, laptop, new_computer = base / "server", base / "joes-thinkpad", base / "new-laptop"
    for d in (server_home, laptop, new_computer):
        d.mkdir()
    chown_tree(base)
    data, address, password = server_home / "data", f"127.0.0.1:{free_port()}", secrets.token_urlsafe(12)
    server_cli = str(VENV_BIN / "homesync-server")
    client = str(VENV_BIN / "homesync")
    demote = {"user": UNPRIVILEGED, "group": UNPRIVILEGED, "extra_groups": []} if os.geteuid() == 0 else {}
    server = None
    try:
        t = step(f"homesync-server init + user add joe + serve on {address}")
        fingerprint = run([server_cli, "init", "--data", str(data), "--listen", address], server_home).stdout.strip()
        run([server_cli, "user", "add", "joe", "--password-stdin", "--data", str(data)], server_home, password + "\n")
        SERVER_LOG.append(server_home / "serve.log")
        server = subprocess.Popen([server_cli, "serve", "--data", str(data)], env=user_env(server_home),
                                  stdout=open(server_home / "serve.log", "wb"), stderr=subprocess.STDOUT, **demote)
        _wait_for(address)
        done(t, f"host key {fingerprint} ")

        t = step(f"generating Joe's home directory in {laptop}")
        stats = make_home(laptop, seed=2026, files=3000, total_bytes=150 << 20)
        chown_tree(laptop)
        done(t, f"{stats} ")

        t = step(f"homesync enroll --machine \"{MACHINE}\"")
        print("   " + run([client, "enroll", "--server", address, "--user", "joe", "--machine", MACHINE,
                           "--fingerprint", fingerprint, "--password-stdin"], laptop, password + "\n").stdout.strip())
        done(t)

        for label in ("first backup", "second backup, after changing some files"):
            if label.startswith("second"):
                print(f"   changed: {mutate_home(laptop, seed=2027)}")
                chown_tree(laptop)
            t = step(f"homesync backup ({label})")
            result = json.loads(run([client, "backup", "--json"], laptop).stdout)
            done(t, f"archive {result['name']}: {result['files']} files, {result['original_size'] / 1e6:.1f} MB, "
                    f"{result['deduplicated_size'] / 1e6:.1f} MB new ")
        expected = snapshot(laptop, exclude=NOT_BACKED_UP)

        step("homesync archives")
        print(run([client, "archives"], laptop).stdout.rstrip())

        t = step("throwing the laptop out of the window (its home and its homesync state are gone)")
        Computer(laptop).throw_away()  # once the file catalog its last backup started keeping is written
        done(t)

        t = step(f"on new hardware: homesync restore --machine \"{MACHINE}\" (never enrolled here)")
        restored = json.loads(run([client, "restore", "--machine", MACHINE, "--server", address, "--user", "joe",
                                   "--fingerprint", fingerprint, "--password-stdin", "--json"],
                                  new_computer, password + "\n").stdout)
        done(t, f"{restored['restored']} entries, {restored['bytes'] / 1e6:.1f} MB restored ")

        t = step("proving the new home bit-identical to the second backup")
        found = snapshot(new_computer, exclude=NOT_BACKED_UP)
        differences = [d for d in diff_snapshots(expected, found, ignore_root=True)]
        if abs(expected[b"."]["mtime_ns"] - found[b"."]["mtime_ns"]) >= 1000 or \
                expected[b"."]["mode"] != found[b"."]["mode"]:
            differences.append("the home directory's own mode or mtime differs")
        if differences:
            print("\n".join(differences[:20]))
            sys.exit(f"demo: FAILED: {len(differences)} differences")
        done(t, f"bit-identical: {len(expected)} entries compared (content, mode, mtime ns, symlinks, "
                "hard links, xattrs) ")

        step("what the server knows (homesync-server machines)")
        print(run([server_cli, "machines", "--data", str(data)], server_home).stdout.rstrip())
        print("\ndemo: OK")
        return 0
    finally:
        if server and server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for(address: str) -> None:
    import socket
    host, port = address.rsplit(":", 1)
    for _ in range(200):
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("demo: the server did not start")


if __name__ == "__main__":
    sys.exit(main())
