"""What kind of computer this is, in words ("laptop", "desktop"), for the name
`homesync setup` suggests: from the firmware's chassis type, else from hostnamectl;
HOMESYNC_CHASSIS overrides both (tests, odd hardware)."""

from __future__ import annotations

import os
from pathlib import Path

from homesync import execute

ENV_OVERRIDE = "HOMESYNC_CHASSIS"
DMI_FILE = Path("/sys/class/dmi/id/chassis_type")
# SMBIOS chassis types (DSP0134 7.4.1) a person would call by one word.
_DMI = {3: "desktop", 4: "desktop", 5: "desktop", 6: "desktop", 7: "desktop", 15: "desktop", 16: "desktop",
        35: "desktop", 36: "desktop", 8: "laptop", 9: "laptop", 10: "laptop", 14: "laptop", 31: "laptop",
        32: "laptop", 11: "handheld", 30: "tablet", 13: "all-in-one", 17: "server", 23: "server", 28: "server"}
_HOSTNAMECTL = {"laptop": "laptop", "convertible": "laptop", "desktop": "desktop", "server": "server",
                "tablet": "tablet", "handset": "phone", "watch": "watch", "embedded": "device",
                "vm": "virtual machine", "container": "container"}


def from_dmi(text: str) -> str:
    """Given the content of /sys/class/dmi/id/chassis_type, return the chassis in words, or ""."""
    text = text.strip()
    return _DMI.get(int(text), "") if text.isdigit() else ""


def from_hostnamectl(text: str) -> str:
    """Given `hostnamectl chassis`'s output, return the chassis in words, or ""."""
    return _HOSTNAMECTL.get(text.strip().lower(), "")


def detect() -> str:
    """Return this computer's chassis in words, or "" if nothing says."""
    override = os.environ.get(ENV_OVERRIDE)
    if override is not None:
        return override.strip()
    try:
        kind = from_dmi(DMI_FILE.read_text())
    except OSError:
        kind = ""
    return kind or _hostnamectl()


def _hostnamectl() -> str:
    try:
        done = execute.run(["hostnamectl", "chassis"], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                           timeout=5)
    except OSError:
        return ""
    return from_hostnamectl(done.stdout.decode(errors="replace")) if done.returncode == 0 else ""
