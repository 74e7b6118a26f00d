"""`homesync`: argument parsing for the user and agent commands; each command calls
one action and prints its result (human text, or JSON with --json)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from homesync.actions import history  # find, versions
from homesync import config as agent_config
from homesync import chooser, console
from homesync.actions import backup, enroll, listing, restore, setup, status
from homesync.config import Paths
from homesync.errors import SetupChoiceError, UsageError
from homesync.results import BackupResult, RestorePreview, RestoreResult


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homesync", description="home-directory backup and restore")
    parser.add_argument("--debug", action="store_true", help="log everything, show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, json: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        if json:
            sub.add_argument("--json", action="store_true", help="print JSON")
        return sub

    def remote(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--server", help="HOST:PORT of the backup server (not enrolled computers)")
        sub.add_argument("--user", help="your user name on the backup server")
        sub.add_argument("--fingerprint", help="the server's host key fingerprint, SHA256:…")
        sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    e = command("enroll", "register this computer with the backup server", json=False)
    e.add_argument("--server", required=True)
    e.add_argument("--user", required=True)
    e.add_argument("--machine", required=True, help="a name for this computer, e.g. \"Joe's Thinkpad\"")
    e.add_argument("--fingerprint", required=True)
    e.add_argument("--password-stdin", action="store_true")
    command("backup", "back up now")
    m = command("machines", "your computers and their newest backup")
    remote(m)
    a = command("archives", "the backups of one of your computers")
    a.add_argument("--machine", help="the computer's name (default: this one)")
    remote(a)
    r = command("restore", "restore a computer's home directory")
    r.add_argument("--machine", help="the computer to restore, e.g. \"Joe's Thinkpad\" (on a terminal: "
                                      "omit it to choose from a list)")
    r.add_argument("--template", metavar="NAME", help="start from a template home your admin published, "
                                                       "e.g. \"standard laptop\" (not with --machine)")
    r.add_argument("--archive", default="latest", help="an archive name, or latest")
    r.add_argument("--target", help="where to restore (default: your home directory)")
    r.add_argument("--path", action="append", default=[], help="restore only this file or folder, at any depth "
                                                                "(repeatable)")
    r.add_argument("--beside", action="store_true", help="put each --path next to the current one, named after "
                                                          "when it was modified: report (2026-11-20 14:02).odt")
    r.add_argument("--adopt", action="store_true", help="this computer becomes the restored machine")
    r.add_argument("--as-new", metavar="NAME", help="then enroll this computer as a new machine NAME (a clone)")
    r.add_argument("--dry-run", action="store_true", help="show what would be written and kept aside; write nothing")
    r.add_argument("--jobs", type=int, metavar="N", help="extractions at once (default: one per core, at most 4)")
    remote(r)
    _add_setup_command(command)
    command("agent", "run the background agent (the systemd user unit starts it)", json=False)
    command("status", "what the background agent is doing, and why")
    f = command("find", "find a backed-up file by a part of its name, or a glob such as *.odt")
    f.add_argument("pattern", help="a part of the path (any case), or a glob of the name or path")
    f.add_argument("--machine", help="search this computer only (default: all of yours)")
    f.add_argument("--since", help="only backups made since: 7d, 12h, 2w, or a date such as 2026-11-20")
    f.add_argument("--case-sensitive", action="store_true", help="do not ignore case")
    remote(f)
    v = command("versions", "every version of one backed-up file, by content (of a folder: each state it was in)")
    v.add_argument("path", help="the file or folder, relative to the home (or absolute, inside it)")
    v.add_argument("--machine", help="the computer (default: this one)")
    remote(v)
    return parser


def _add_setup_command(command) -> None:
    s = command("setup", "set this computer up at first login: new, replacing one, identical to one, or from a "
                         "template (on a terminal: omit the choice to be asked)")
    s.add_argument("--new", action="store_true", help="set this computer up as a new one")
    s.add_argument("--machine", metavar="NAME", help="with --new: its name (default: a suggestion such as "
                                                      "\"Joe's laptop\")")
    s.add_argument("--replace", metavar="NAME", help="this computer replaces your computer NAME: its home is "
                                                      "restored and its backups continue here")
    s.add_argument("--clone", metavar="NAME", help="this computer is identical to your computer NAME: its home "
                                                    "is restored, this computer gets a name of its own (--as)")
    s.add_argument("--template", metavar="NAME", help="start from the template NAME your admin published")
    s.add_argument("--as", dest="as_name", metavar="NEWNAME", help="with --clone or --template: this computer's "
                                                                  "name (default: a suggestion)")
    s.add_argument("--no-backup", action="store_true", help="with --new: do not run the first backup now")
    s.add_argument("--user", help="your user name on the backup server (default: your login name)")
    s.add_argument("--server", help="HOST:PORT (default: from the site configuration, /etc/homesync/agent.toml)")
    s.add_argument("--fingerprint", help="SHA256:… (default: from the site configuration)")
    s.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _set_up(args: argparse.Namespace, paths: Paths) -> None:
    """`homesync setup`: check the flags, log in, ask (on a terminal) or take the flags'
    choice, and set this computer up."""
    choice = setup.choice_from_flags(setup.Flags(args.new, args.machine, args.replace, args.clone, args.as_name,
                                                 args.template))
    if args.no_backup and choice is not None and choice.kind != setup.NEW:
        raise SetupChoiceError("--no-backup goes with --new (only a new computer backs up at setup)")
    if choice is None and (args.password_stdin or not sys.stdin.isatty()):
        raise SetupChoiceError("how should this computer be set up? pass --new, --replace NAME, --clone NAME "
                               "or --template NAME", "on a terminal, homesync setup asks")
    setup.check_not_set_up(paths)
    addresses, fingerprint = setup.where(args.server, args.fingerprint)
    user = args.user or setup.default_user()
    password = console.read_password(args.password_stdin, f"Password for {user}: ")
    from homesync.agent import fleet  # the first address that answers, chosen as a manual backup chooses
    offer = setup.log_in(fleet.first_answering(list(addresses)), fingerprint, user, password)
    if choice is None:
        choice = chooser.choose_setup(offer)
    result = setup.set_up(paths, offer, choice, first_backup=not args.no_backup,
                          restore_progress=console.progress_printer(args.json),
                          backup_events=lambda config: _backup_bar(config, paths, args.json))
    if args.json:
        console.print_json(result)
        return
    if "restore" in result:
        _print_restore(result["restore"], False)
    else:
        print(f"this computer is set up as {result['machine']!r} (machine {result['machine_id']})")
        if "backup" in result:
            _print_backup(result["backup"], False)


def dispatch(args: argparse.Namespace) -> int:
    paths = Paths.from_environment()
    if args.command == "enroll":
        password = console.read_password(args.password_stdin, f"Password for {args.user}: ")
        answer = enroll.enroll(paths, args.server, args.user, args.machine, args.fingerprint, password)
        print(f"enrolled this computer as {answer['name']!r} (machine {answer['machine_id']})")
    elif args.command == "backup":
        from homesync.agent import fleet  # config.toml over the fleet policy the agent last received
        config = fleet.answering(fleet.load(paths), paths)  # fails over to the next address as the agent does
        result = backup.backup(config, paths, on_event=_backup_bar(config, paths, args.json))
        _print_backup(result, args.json)
    elif args.command == "machines":
        _print_machines(listing.machines(paths, _login(args, paths)), args.json)
    elif args.command == "archives":
        _print_archives(listing.archives(paths, args.machine, lambda: _login(args, paths)), args.json)
    elif args.command == "restore":
        login = functools.cache(lambda: _login(args, paths))
        request = restore.Request(machine=args.machine, archive=args.archive,
                                  target=Path(args.target) if args.target else Path.home(),
                                  paths=tuple(args.path), adopt=args.adopt, as_new=args.as_new,
                                  dry_run=args.dry_run, template=args.template, beside=args.beside,
                                  jobs=args.jobs)
        if args.machine is None and args.template is None:
            request = _chosen(request, paths, login)
        result = restore.restore(paths, request, login=login, progress=console.progress_printer(args.json))
        _print_restore(result, args.json)
    elif args.command == "setup":
        _set_up(args, paths)
    elif args.command == "agent":
        from homesync.agent import daemon  # D-Bus, inotify and asyncio: only for the daemon
        return daemon.run(paths)
    elif args.command == "status":
        answer, code = status.status(paths)
        if args.json:
            console.print_json(answer)
        else:
            print(status.render(answer))
        return code
    elif args.command == "find":
        rows = history.find(paths, args.pattern, args.machine, functools.cache(lambda: _login(args, paths)),
                            since=args.since or "", case_sensitive=args.case_sensitive)
        _print_found(rows, args.json)
    elif args.command == "versions":
        rows = history.versions(paths, args.path, args.machine, functools.cache(lambda: _login(args, paths)))
        _print_versions(rows, args.json)
    return 0


def _backup_bar(config, paths: Paths, as_json: bool):
    """Return the progress bar's event callback for a backup, or None off a terminal."""
    if as_json or not sys.stderr.isatty():
        return None
    return console.backup_progress(as_json, backup.expected_size(config, paths))


def _chosen(request: "restore.Request", paths: Paths, login) -> "restore.Request":
    """Fill the request in from the interactive chooser (terminals only)."""
    if not sys.stdin.isatty():
        raise UsageError("which computer? pass --machine NAME", "on a terminal, homesync restore lets you choose")
    enrolled = listing.enrolled_config(paths) is not None
    choice = chooser.choose(listing.machines(paths, login()), enrolled)
    return dataclasses.replace(request, machine=choice.machine, adopt=choice.adopt or request.adopt,
                               as_new=choice.as_new or request.as_new)


def _login(args: argparse.Namespace, paths: Paths) -> listing.Login:
    """Return the server, fingerprint, user and password for a password login: from the
    arguments, else from this computer's enrollment; the password from stdin or a prompt."""
    try:
        enrolled = agent_config.load(paths)
    except agent_config.NotEnrolledError:
        enrolled = None
    server = args.server or (enrolled.server if enrolled else None)
    fingerprint = args.fingerprint or (enrolled.fingerprint if enrolled else None)
    user = args.user or (enrolled.user if enrolled else None)
    if not (server and fingerprint and user):
        raise UsageError("this computer is not enrolled", "pass --server HOST:PORT --user NAME --fingerprint SHA256:…")
    enroll.check_fingerprint(fingerprint)
    password = console.read_password(args.password_stdin, f"Password for {user}: ")
    return listing.Login(server, fingerprint, user, password)


def _print_backup(result: BackupResult, as_json: bool) -> None:
    if as_json:
        console.print_json(result.as_json())
        return
    print(f"archive {result.name}: {result.files} files, {console.human_size(result.original_size)}"
          f" ({console.human_size(result.deduplicated_size)} new) in {result.duration:.1f} s")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if not result.indexed:
        print("note: the server has not recorded it yet; it will be told with the next backup")


def _print_machines(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(["NAME", "HOST", "LAST BACKUP", "ARCHIVES", "SIZE"],
                        [[r["name"], r["hostname"], console.human_age(r["last_backup"]), r["archives"],
                          console.human_size(r["last_size"])] for r in rows])


def _print_archives(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(["ARCHIVE", "FINISHED", "FILES", "SIZE", "NEW", "RESULT"],
                        [[r["name"], console.human_time(r["end"]), r["files"], console.human_size(r["original_size"]),
                          console.human_size(r["deduplicated_size"]), r["result"]] for r in rows])


def _print_found(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(["PATH", "MODIFIED", "SIZE", "COMPUTER", "IN ARCHIVES"],
                        [[r["path"] + ("/" if r["type"] == "d" else ""), _listed_time(r["mtime"]),
                          console.human_size(r["size"]), r["machine"], _archives(r["archives"])] for r in rows])


def _print_versions(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    if rows and rows[0].get("type") == "d":
        console.print_table(["#", "NEWEST CHANGE", "FILES", "SIZE", "CHANGED", "FIRST SEEN", "LAST SEEN",
                             "RESTORE FROM ARCHIVE"],
                            [[r["number"], _listed_time(r["mtime"]), r["files"], console.human_size(r["size"]),
                              r["changed"] if r["number"] > 1 else "", _listed_time(r["first_seen"]),
                              _listed_time(r["last_seen"]), r["restore_from"]] for r in rows])
        print(f"to get the folder back as it was, beside the current one: homesync restore --machine "
              f"{shlex.quote(rows[0]['machine'])} --archive ARCHIVE --path {shlex.quote(rows[0]['path'])} --beside")
        return
    console.print_table(["#", "MODIFIED", "SIZE", "FIRST SEEN", "LAST SEEN", "RESTORE FROM ARCHIVE"],
                        [[r["number"], _listed_time(r["mtime"]), console.human_size(r["size"]),
                          _listed_time(r["first_seen"]), _listed_time(r["last_seen"]), r["restore_from"]]
                         for r in rows])
    if rows:
        print(f"to get one back beside the current file: homesync restore --machine {shlex.quote(rows[0]['machine'])} "
              f"--archive ARCHIVE --path {shlex.quote(rows[0]['path'])} --beside")


def _listed_time(text: str) -> str:
    """Given a time as borg lists it (UTC, no zone), return it in local time."""
    return console.human_time(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def _archives(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} older"


def _print_restore(result: RestoreResult | RestorePreview, as_json: bool) -> None:
    if as_json:
        console.print_json(result)
        return
    if isinstance(result, RestorePreview):
        _print_preview(result)
        return
    print(f"restored {_restored_what(result)} archive {result.archive} into {result.target}: "
          f"{result.restored} entries, {console.human_size(result.bytes)} in {result.seconds:.1f} s; "
          f"{result.skipped_identical} identical files left as they were")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.kept_aside:
        print(f"{len(result.kept_aside)} local files differed and were kept in {result.kept_dir}:")
        for path in result.kept_aside[:20]:
            print(f"  {path}")
        if len(result.kept_aside) > 20:
            print(f"  … and {len(result.kept_aside) - 20} more")
    if result.resumed:
        print(f"resumed an interrupted restore: {', '.join(result.resumed)} had already been restored")
    if result.adopted:
        print(f"this computer is now {result.adopted!r}: its backups continue in the same repository")
    if result.enrolled_as:
        print(f"this computer is enrolled as a new machine, {result.enrolled_as!r}")


def _restored_what(result: RestoreResult | RestorePreview) -> str:
    return f"template {result.template!r}" if result.template else repr(result.machine)


def _print_preview(result: RestorePreview) -> None:
    speed = (f"{console.human_size(result.throughput)}/s, the speed of the last restore here"
             if result.throughput_measured else
             f"an assumed {console.human_size(result.throughput)}/s: no restore was measured here yet")
    print(f"restoring {_restored_what(result)} archive {result.archive} into {result.target} would write "
          f"{result.plan.new_entries} new entries ({console.human_size(result.plan.new_bytes)} of "
          f"{console.human_size(result.plan.total_bytes)}), leave {result.plan.identical} identical files as they"
          f" are, and keep {len(result.plan.kept_aside)} differing local entries aside; about "
          f"{result.estimated_seconds:.0f} s at {speed}")
    for path in result.plan.kept_aside[:20]:
        print(f"  would keep aside: {path}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.would_adopt:
        print(f"then this computer would become {result.would_adopt!r} (its key replaced on the server)")
    if result.would_enroll_as:
        print(f"then this computer would be enrolled as a new machine, {result.would_enroll_as!r}")
    print("nothing was written (dry run)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console.setup_logging(args.debug)
    return console.run_main("homesync", lambda: dispatch(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
