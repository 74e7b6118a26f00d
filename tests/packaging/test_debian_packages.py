"""The Debian packages as an admin gets them: `make deb` builds homesync and
homesync-server; they install with apt into a fresh Debian 12 root (debootstrap
minbase, as ../shared/tools/fresh-machine.sh makes one) that has nothing else, and
there `homesync-server init`, `serve`, an enrollment, a backup and a restore work,
run as root where an admin would (the commands switch to the service user);
`systemd-analyze verify` passes for every unit; purging the server keeps the data, and
installing it again (with systemd present) enables its units and finds the data whole.

Time: the minimal root is built once (debootstrap, under a minute) and kept in
$HOMESYNC_PACKAGING_ROOT (default /var/tmp/homesync-pkgtest); each run installs into
a throwaway overlay over it, with apt's download cache kept beside it, so a run costs
the package build (about a minute) and the install (under a minute with a warm cache).
Where it cannot run (not root, no debootstrap, no overlay mounts) it skips saying why,
and under `make test` (HOMESYNC_REQUIRE_PACKAGING=1) it fails instead."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.processes import free_port

REPO = Path(__file__).parents[2]
CACHE = Path(os.environ.get("HOMESYNC_PACKAGING_ROOT", "/var/tmp/homesync-pkgtest"))
BASE = CACHE / "base"
COMPLETE = BASE / ".homesync-base-complete"
SYSTEM_UNITS = ("homesync-server.service", "homesync-drill.service", "homesync-drill.timer",
                "homesync-prune.service", "homesync-prune.timer", "homesync-report.service",
                "homesync-report.timer")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
       "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}

pytestmark = pytest.mark.slow


def _cannot_run(why: str) -> None:
    message = f"the Debian package test cannot run here: {why}"
    if os.environ.get("HOMESYNC_REQUIRE_PACKAGING"):
        pytest.fail(message)
    pytest.skip(message)


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        _cannot_run("it needs root (debootstrap, chroot, mounts)")
    for tool in ("debootstrap", "dpkg-deb", "systemd-analyze", "chroot"):
        if not shutil.which(tool):
            _cannot_run(f"{tool} is not installed (run `make system-packages`)")


def _build_base() -> None:
    """Build the cached minimal Debian 12 root, once."""
    if COMPLETE.exists():
        return
    shutil.rmtree(BASE, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    mirror = "http://deb.debian.org/debian"
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list.d/debian.sources").read_text().splitlines():
            if line.startswith("URIs:"):
                mirror = line.split()[1]
                break
    done = subprocess.run(["debootstrap", "--variant=minbase", "--include=ca-certificates", "bookworm", str(BASE),
                           mirror], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        _cannot_run(f"debootstrap failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    shutil.copy("/etc/apt/sources.list.d/debian.sources", BASE / "etc/apt/sources.list.d/")
    (BASE / "etc/apt/sources.list").unlink(missing_ok=True)
    COMPLETE.touch()


def _build_packages() -> list[Path]:
    done = subprocess.run(["make", "deb"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"make deb failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    version = next(line.split('"')[1] for line in (REPO / "pyproject.toml").read_text().splitlines()
                   if line.startswith("version = "))
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    debs = [REPO / "dist" / f"{name}_{version}-1_{arch}.deb" for name in ("homesync", "homesync-server")]
    assert all(d.exists() for d in debs), debs
    assert list((REPO / "dist").glob(f"homesync-{version}-py3-none-any.whl")), "no wheel"
    return debs


class Root:
    """A throwaway Debian root: an overlay over the cached base, with /proc, /sys, /dev."""

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
        self.path = self.run_dir / "merged"
        self.mounts: list[Path] = []

    def __enter__(self) -> "Root":
        for d in ("upper", "work", "merged"):
            (self.run_dir / d).mkdir()
        mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                  f"lowerdir={BASE},upperdir={self.run_dir}/upper,workdir={self.run_dir}/work",
                                  str(self.path)], capture_output=True, text=True)
        if mounted.returncode != 0:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            _cannot_run(f"an overlay mount failed: {mounted.stderr.strip()}")
        self.mounts.append(self.path)
        archives = CACHE / "apt-archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        for source, target in (("/proc", "proc"), ("/sys", "sys"), ("/dev", "dev"), ("/dev/pts", "dev/pts"),
                               (str(archives), "var/cache/apt/archives")):
            subprocess.run(["mount", "--bind", source, str(self.path / target)], check=True)
            self.mounts.append(self.path / target)
        for name in ("etc/resolv.conf", "etc/hosts", "etc/ssl/certs/ca-certificates.crt"):
            if Path("/" + name).exists():
                shutil.copy("/" + name, self.path / name)
        return self

    def __exit__(self, *exc) -> None:
        for mount in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def argv(self, command: str, user: str = "") -> list[str]:
        env = {**ENV, "HOME": f"/home/{user}", "USER": user, "LOGNAME": user} if user else ENV
        inner = ["runuser", "-u", user, "--", "bash", "-c", command] if user else ["bash", "-c", command]
        return ["chroot", str(self.path), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *inner]

    def run(self, command: str, user: str = "", input: str | None = None, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command in the root (as user, else root); return it, finished."""
        done = subprocess.run(self.argv(command, user), input=input, capture_output=True, text=True,
                              timeout=timeout)
        if check:
            assert done.returncode == 0, f"{command!r} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited with {process.returncode}"
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.1)
    raise AssertionError("serve did not listen")


def test_the_packages_install_on_a_fresh_debian_and_back_up_and_restore():
    _check_prerequisites()
    debs = _build_packages()
    _build_base()
    with Root() as root:
        for deb in debs:
            shutil.copy(deb, root.path / "tmp")
        root.run("apt-get update -q", timeout=600)
        installed = root.run("apt-get install -y -q --no-install-recommends " +
                             " ".join(f"/tmp/{d.name}" for d in debs), timeout=900)
        assert "homesync-server init" in installed.stdout  # postinst says what to do next
        _check_installed_layout(root)

        port = free_port()
        init = root.run(f"homesync-server init --listen 127.0.0.1:{port}")  # as root: it becomes homesync
        fingerprint = init.stdout.strip()
        assert fingerprint.startswith("SHA256:")
        root.run("homesync-server user add joe --password-stdin", input="joe-package-pw\n")
        assert root.run("find /var/lib/homesync ! -user homesync").stdout == ""
        assert root.run("readlink -f /etc/homesync/server.toml").stdout.strip() == "/var/lib/homesync/server.toml"

        serve = subprocess.Popen(root.argv("exec homesync-server serve"), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_port(port, serve)
            _enroll_back_up_and_restore(root, port, fingerprint)
            doctor = root.run("homesync-server doctor --json", check=False)
            problems = [f for f in json.loads(doctor.stdout) if not f["ok"]]
            assert [p["check"] for p in problems] in ([], ["free space"]), problems
        finally:
            os.killpg(serve.pid, signal.SIGTERM)
            out = serve.communicate(timeout=60)[0].decode(errors="replace")
        assert serve.returncode == 0, out[-3000:]
        _verify_units(root)

        root.run("apt-get purge -y -q homesync-server")
        assert root.run("ls /var/lib/homesync/repos | wc -l").stdout.strip() == "1"
        assert root.run("test -s /var/lib/homesync/escrow.key && echo kept").stdout.strip() == "kept"
        # installed again (systemd is there now): the units are enabled, the data is as it was
        root.run(f"apt-get install -y -q --no-install-recommends /tmp/{debs[1].name}", timeout=600)
        enabled = root.run("systemctl is-enabled homesync-server.service homesync-prune.timer "
                           "homesync-drill.timer homesync-report.timer").stdout.split()
        assert enabled == ["enabled"] * 4
        (machine,) = json.loads(root.run("homesync-server machines --json").stdout)
        assert machine["name"] == "Joe's Laptop" and machine["archives"] == 1


def _check_installed_layout(root: Root) -> None:
    account = root.run("getent passwd homesync").stdout.split(":")
    assert account[5] == "/var/lib/homesync" and account[6].strip() == "/usr/sbin/nologin"
    assert root.run("stat -c '%U %a' /var/lib/homesync").stdout.strip() == "homesync 700"
    assert root.run("dpkg-query -W -f='${Conffiles}' homesync").stdout.strip().startswith("/etc/homesync/agent.toml")
    for doc in ("homesync/user-guide.md", "homesync-server/admin-guide.md"):
        root.run(f"test -s /usr/share/doc/{doc}")
    # nothing but the packages' own dependencies: no compiler, no test tools
    for absent in ("gcc", "slapd", "python3-venv", "python3-dev", "systemd"):
        status = root.run(f"dpkg-query -W -f='${{Status}}' {absent}", check=False).stdout
        assert status != "install ok installed", f"{absent} was installed"
    assert root.run("/opt/homesync/bin/borg --version").stdout.startswith("borg 1.4.")


def _verify_units(root: Root) -> None:
    """systemd-analyze verify for every unit, the system ones and the agent's user unit,
    in the root once systemd (the packages' Recommends) is there; each Documentation=
    names an installed file."""
    root.run("apt-get install -y -q --no-install-recommends systemd", timeout=900)
    system = [f"/usr/lib/systemd/system/{u}" for u in SYSTEM_UNITS]
    user = ["/usr/lib/systemd/user/homesync-agent.service"]
    checked = root.run(f"systemd-analyze verify {' '.join(system)} 2>&1", check=False)
    assert checked.returncode == 0 and "homesync" not in checked.stdout, checked.stdout
    # a user manager's view, as the user (it needs the user's runtime directory)
    checked = root.run("mkdir -p -m 0700 /tmp/xdg-joe && XDG_RUNTIME_DIR=/tmp/xdg-joe "
                       f"systemd-analyze verify --user {' '.join(user)} 2>&1", user="joe", check=False)
    assert checked.returncode == 0 and "homesync" not in checked.stdout, checked.stdout
    for unit in system + user:
        for line in (root.path / unit.lstrip("/")).read_text().splitlines():
            if line.startswith("Documentation=file://"):
                assert (root.path / line.split("file://", 1)[1].lstrip("/")).is_file(), f"{unit}: {line}"


def _enroll_back_up_and_restore(root: Root, port: int, fingerprint: str) -> None:
    root.run("useradd --create-home --shell /bin/bash joe")
    root.run("mkdir -p ~/Documents && head -c 300000 /dev/urandom > ~/Documents/thesis.bin && "
             "echo 'chapter one' > ~/Documents/notes.txt", user="joe")
    root.run(f"homesync enroll --server 127.0.0.1:{port} --user joe --machine \"Joe's Laptop\" "
             f"--fingerprint {fingerprint} --password-stdin", user="joe", input="joe-package-pw\n")
    backup = json.loads(root.run("homesync backup --json", user="joe").stdout)
    assert backup["files"] >= 2
    root.run("useradd --create-home --shell /bin/bash joe2")
    restored = root.run(f"homesync restore --machine \"Joe's Laptop\" --server 127.0.0.1:{port} --user joe "
                        f"--fingerprint {fingerprint} --password-stdin --json", user="joe2",
                        input="joe-package-pw\n")
    assert json.loads(restored.stdout)["archive"] == backup["name"]
    same = root.run("cmp /home/joe/Documents/thesis.bin /home/joe2/Documents/thesis.bin && "
                    "cat /home/joe2/Documents/notes.txt")
    assert same.stdout.strip() == "chapter one"
