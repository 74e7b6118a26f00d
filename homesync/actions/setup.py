"""`homesync setup`: the first login on a computer. The user logs in with their
password (the server comes from the image's site configuration), sees their computers
and the templates, and sets this computer up as a new one, as the replacement of one
(restore + adopt), identical to one (restore + enroll as a clone), or from a template
(restore + enroll). The work is done by the enroll, restore and backup actions."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from homesync import chassis, link, names, site
from homesync import config as agent_config
from homesync.actions import backup, enroll, restore
from homesync.actions.listing import Login, enrolled_config
from homesync.config import Paths
from homesync.errors import ConfigError, ConflictError, HomesyncError, SetupChoiceError

NEW, REPLACE, CLONE, TEMPLATE = "new", "replace", "clone", "template"


@dataclass(frozen=True)
class Flags:
    """The choice as given on the command line (None/False: not given)."""

    new: bool
    machine: str | None
    replace: str | None
    clone: str | None
    as_name: str | None
    template: str | None


@dataclass(frozen=True)
class Choice:
    """How this computer is set up: kind, the computer or template it starts from, and
    its name (None: the suggested one)."""

    kind: str
    source: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Offer:
    """What the server offers the logged-in user: who they are, their computers, the templates."""

    login: Login
    full_name: str
    machines: list[dict]
    templates: list[dict]
    suggested: str


def choice_from_flags(flags: Flags) -> Choice | None:
    """Given the flags, return the choice they make, or None if they make none (the
    interactive form). Raise SetupChoiceError for a combination that is not one choice."""
    given = [f for f, on in (("--new", flags.new), ("--replace", flags.replace), ("--clone", flags.clone),
                             ("--template", flags.template)) if on]
    if len(given) > 1:
        raise SetupChoiceError(f"choose only one of --new, --replace, --clone, --template (got {' and '.join(given)})")
    if flags.machine is not None and not flags.new:
        raise SetupChoiceError("--machine NAME names a new computer: use it with --new",
                               "with --clone or --template, name this computer with --as NAME")
    if flags.as_name is not None and not (flags.clone or flags.template):
        raise SetupChoiceError("--as NAME goes with --clone or --template",
                               "with --new, name this computer with --machine NAME")
    if flags.new:
        return Choice(NEW, name=flags.machine)
    if flags.replace:
        return Choice(REPLACE, source=flags.replace)
    if flags.clone:
        return Choice(CLONE, source=flags.clone, name=flags.as_name)
    if flags.template:
        return Choice(TEMPLATE, source=flags.template, name=flags.as_name)
    return None


def where(server: str | None, fingerprint: str | None) -> tuple[tuple[str, ...], str]:
    """Return the server addresses to try and the host key fingerprint: from the
    command line, else from the site configuration. Raise ConfigError if neither says."""
    found = site.load() if not (server and fingerprint) else None
    addresses = (server,) if server else (found.addresses if found else ())
    fingerprint = fingerprint or (found.fingerprint if found else None)
    if not addresses or not fingerprint:
        raise ConfigError("no site configuration says where the backup server is "
                          f"({' or '.join(str(p) for p in reversed(site.candidates()))})",
                          "pass --server HOST:PORT --fingerprint SHA256:…, or ask your admin")
    enroll.check_fingerprint(fingerprint)
    return addresses, fingerprint


def check_not_set_up(paths: Paths) -> None:
    """Raise ConflictError if this computer is already set up (enrolled)."""
    config = enrolled_config(paths)
    if config is not None:
        raise ConflictError(f"this computer is already set up as {config.machine_name!r}",
                            "see `homesync status`; to start over, move "
                            f"{paths.config_dir} and {paths.data_dir} away first")


def default_user() -> str:
    """Return the user name to log in with when none is given: this login's."""
    return getpass.getuser()


def log_in(address: str, fingerprint: str, user: str, password: str) -> Offer:
    """Log in at address (the first that answers: the CLI chooses it as a manual backup
    does, homesync.agent.fleet.first_answering); return what the server offers. Raise
    ConnectionFailedError or LoginError."""
    with link.user_session(address, fingerprint, user, password) as session:
        rpc = session.rpc()
        me, machines, templates = rpc.call("whoami"), rpc.call("machines.list"), rpc.call("templates.list")
    login = Login(address, fingerprint, user, password)
    full_name = me.get("display_name") or ""
    suggested = names.suggest_machine_name(full_name, user, chassis.detect(), [m["name"] for m in machines])
    return Offer(login, full_name, machines, templates, suggested)


def _check_name_free(offer: Offer, name: str) -> None:
    """Raise ConflictError before anything is written if the user has a computer called name."""
    taken = [m["name"] for m in offer.machines if names.machine_name_key(m["name"]) == names.machine_name_key(name)]
    if taken:
        raise ConflictError(f"you already have a computer named {taken[0]!r}", "choose another name for this one")


def _first_backup(paths: Paths, name: str, backup_events) -> dict:
    """Run the new computer's first backup; if it fails, say that the computer is set up
    all the same (the error keeps its exit code)."""
    config = agent_config.load(paths)
    try:
        return backup.backup(config, paths, on_event=backup_events(config))
    except HomesyncError as e:
        e.message = f"this computer is set up as {name!r}, but its first backup failed: {e.message}"
        e.hint = "nothing to redo: the agent tries again by itself, or run `homesync backup`"
        raise


def set_up(paths: Paths, offer: Offer, choice: Choice, *, first_backup: bool = True,
           restore_progress: restore.Progress | None = None,
           backup_events: Callable[[agent_config.AgentConfig], Callable[[dict], None] | None] = lambda c: None) -> dict:
    """Set this computer up as chosen; return what was done ("choice", "machine", and the
    "restore" or "backup" result)."""
    login = offer.login
    name = names.machine_name(choice.name or offer.suggested)
    if choice.kind != REPLACE:
        _check_name_free(offer, name)
    if choice.kind == NEW:
        answer = enroll.enroll(paths, login.server, login.user, name, login.fingerprint, login.password)
        result = {"choice": NEW, "machine": answer["name"], "machine_id": answer["machine_id"]}
        if first_backup:
            result["backup"] = _first_backup(paths, answer["name"], backup_events)
        return result
    request = restore.Request(machine=choice.source, target=Path.home())
    if choice.kind == REPLACE:
        request = replace(request, adopt=True)
    elif choice.kind == CLONE:
        request = replace(request, as_new=name)
    else:
        request = replace(request, machine=None, template=choice.source)
    done = restore.restore(paths, request, login=lambda: login, progress=restore_progress)
    result = {"choice": choice.kind, "restore": done}
    if choice.kind == TEMPLATE:
        answer = enroll.enroll(paths, login.server, login.user, name, login.fingerprint, login.password)
        done.enrolled_as = answer["name"]
    result["machine"] = done.adopted or done.enrolled_as
    return result
