"""What an old computer is told when its machine key was revoked: replaced by an adopt
(by which computer, when) or retired by an admin (when). Pure: the index says why."""

from __future__ import annotations

import time
from typing import Any

from homesync.errors import MachineReplacedError, MachineRetiredError, MachineRevokedError

_AGAIN = "this computer is no longer backed up; to back it up again, enroll it as a new machine " \
         "as the user guide says under \"This computer was replaced or retired\""


def error(revoked: dict[str, Any]) -> MachineRevokedError:
    """Given Index.revoked_key's answer, return the error every action of the session fails with."""
    when = _date(revoked.get("at"))
    if revoked["why"] == "replaced":
        return MachineReplacedError(
            f"the server refused this computer's key: it was replaced by the computer {revoked['hostname']!r}, "
            f"which took over machine {revoked['name']!r} on {when} (restore --adopt)", _AGAIN)
    return MachineRetiredError(f"the server refused this computer's key: machine {revoked['name']!r} was retired "
                               f"by an admin on {when} (its backups are kept)", _AGAIN)


def _date(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at)) if at else "an unknown date"
