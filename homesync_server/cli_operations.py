"""`homesync-server` commands for operations: drill, prune, hold, reindex, machine
retire|rename|transfer|release, template publish|list and login list|unblock. Argument parsing and output
only; each command calls one action, imported when it runs (the actions bring
paramiko and the key handling, which the parser and the report commands need not
load). Kept apart from cli.py so that its commands stay easy to read."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Callable

from homesync import console
from homesync.errors import BorgError, OutputError, RestoreError, UsageError
from homesync.durations import duration
from homesync_server.config import Layout

COMMANDS = ("drill", "prune", "hold", "reindex", "machine", "template", "login", "policy", "index")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the operations commands to homesync-server's subcommands."""
    _add_drill(commands)
    _add_prune(commands)
    _add_hold(commands)
    reindex_p = _sub(commands, "reindex", "rebuild a lost index from the repositories (stop the server first)")
    reindex_p.add_argument("--force", action="store_true", help="replace an index that still lists machines")
    _add_machine(commands)
    index = commands.add_parser("index", help="the index's database").add_subparsers(dest="index_command",
                                                                                     required=True)
    moved = _sub(index, "migrate", "copy the index into an empty PostgreSQL database (stop the server first)")
    moved.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST/DATABASE")
    _add_template(commands)
    _add_login(commands)
    from homesync_server import cli_policy  # issue 19: the fleet policy
    cli_policy.add_command(commands)


def _sub(parent: argparse._SubParsersAction, name: str, help: str, json: bool = True) -> argparse.ArgumentParser:
    sub = parent.add_parser(name, help=help)
    sub.add_argument("--data", help="data directory (default: $HOMESYNC_SERVER_DATA)")
    if json:
        sub.add_argument("--json", action="store_true")
    return sub


def _add_drill(commands: argparse._SubParsersAction) -> None:
    p = _sub(commands, "drill", "check, restore and verify machines' newest backups in a scratch area")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--machine", metavar="ID|NAME", help="a machine, by id or by name (with --user: of that user)")
    p.add_argument("--user", metavar="NAME", help="every active machine of a user (with --machine: whose machine)")
    which.add_argument("--sample", metavar="N", type=_positive, help="N machines, least recently drilled first")
    which.add_argument("--all", action="store_true", help="every active machine")
    p.add_argument("--output", metavar="FILE", help="write the results to FILE instead of standard output")
    p.add_argument("--lock-wait", type=_positive, metavar="SECONDS",
                   help="wait this long for a repository in use (default: the drill's own, 300)")


def _add_prune(commands: argparse._SubParsersAction) -> None:
    p = _sub(commands, "prune", "apply the retention policy, then compact")
    p.add_argument("--machine", metavar="ID|NAME")
    p.add_argument("--user", metavar="NAME", help="whose machine --machine names")
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.add_argument("--lock-wait", type=_positive, default=60, metavar="SECONDS")


def _add_hold(commands: argparse._SubParsersAction) -> None:
    hold = commands.add_parser("hold", help="legal holds: held archives are never pruned")
    actions = hold.add_subparsers(dest="hold_command", required=True)
    for name, help in (("add", "hold an archive, or all of a machine's"), ("remove", "lift a hold")):
        p = _sub(actions, name, help)
        p.add_argument("--machine", metavar="ID|NAME", required=True)
        p.add_argument("--user", metavar="NAME", help="whose machine --machine names")
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--archive", metavar="NAME")
        which.add_argument("--all", action="store_true", help="every archive, present and future")
        if name == "add":
            p.add_argument("--reason", default="", help="e.g. a case number")
    listed = _sub(actions, "list", "list holds")
    listed.add_argument("--machine", metavar="ID|NAME")
    listed.add_argument("--user", metavar="NAME", help="whose machine --machine names")


def _add_machine(commands: argparse._SubParsersAction) -> None:
    machine = commands.add_parser("machine", help="retire, rename or transfer a machine; release a frozen one")
    actions = machine.add_subparsers(dest="machine_command", required=True)
    for name, help in (("retire", "refuse the machine's key from now on"), ("rename", "give it a new name"),
                       ("transfer", "give it to another user"), ("release", "lift a mass-change freeze")):
        p = _sub(actions, name, help)
        p.add_argument("--machine", metavar="ID|NAME", required=True)
        p.add_argument("--user", metavar="NAME", help="whose machine --machine names")
        if name == "rename":
            p.add_argument("--name", required=True)
        elif name == "transfer":
            p.add_argument("--to", metavar="USER", required=True)


def _add_template(commands: argparse._SubParsersAction) -> None:
    template = commands.add_parser("template", help="template homes users restore with `homesync restore --template`")
    actions = template.add_subparsers(dest="template_command", required=True)
    p = _sub(actions, "publish", "publish DIR as the template's newest archive (creating the template)")
    p.add_argument("name", help="the template's name, e.g. \"standard laptop\"")
    p.add_argument("--from", dest="source", metavar="DIR", required=True, help="the template home")
    _sub(actions, "list", "the published templates")
    _sub(actions, "remove", "remove a template and its archives (users can no longer restore it)").add_argument(
        "name", help="the template's name")


def _add_login(commands: argparse._SubParsersAction) -> None:
    login = commands.add_parser("login", help="password logins counted or blocked after failures")
    actions = login.add_subparsers(dest="login_command", required=True)
    _sub(actions, "list", "accounts and addresses with failed logins counted, blocked ones first")
    p = _sub(actions, "unblock", "forget an account's or an address's failed logins (lifts its block)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="the user name, as the user types it")
    which.add_argument("--address", metavar="ADDR", help="a source IP address")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def run(layout: Layout, args: argparse.Namespace) -> int:
    """Run one operations command; print its result; raise HomesyncError on failure."""
    _name_machine(layout, args)
    if args.command == "drill":
        return _drill(layout, args)
    if args.command == "prune":
        return _prune(layout, args)
    if args.command == "reindex":
        from homesync_server.actions import reindex

        _print(reindex.reindex(layout, args.force), args.json, _print_reindex)
    elif args.command == "index":
        from homesync_server.actions import index_migration

        moved = index_migration.migrate(layout, args.to)
        _print(moved, args.json, _print_migration)
        return 0 if moved["counts_equal"] and moved["audit"]["intact"] else 1
    elif args.command == "hold":
        _hold(layout, args)
    elif args.command == "template":
        _template(layout, args)
    elif args.command == "login":
        _login(layout, args)
    elif args.command == "policy":
        from homesync_server import cli_policy
        return cli_policy.run(layout, args)
    else:
        _machine(layout, args)
    return 0


def _print_migration(moved: dict[str, Any]) -> None:
    rows = sum(moved["tables"].values())
    audit = moved["audit"]
    print(f"copied {rows} rows ({moved['tables']['machines']} machines, {moved['tables']['archives']} archives, "
          f"{moved['tables']['audit']} audit events) from {moved['from']} to {moved['to']} in {moved['seconds']} s")
    print("counts equal" if moved["counts_equal"] else "COUNTS DIFFER: do not switch", end="; ")
    print(f"audit log intact: {audit['checked']} events" if audit["intact"] else
          f"audit log BROKEN at row {audit['broken']['row_id']}: do not switch")
    print(moved["next"])


def _name_machine(layout: Layout, args: argparse.Namespace) -> None:
    """Turn --machine NAME (--user OWNER) into the machine's id; a drill of one named
    machine is not a drill of all the owner's."""
    if args.command == "drill" and not any((args.machine, args.user, args.sample, args.all)):
        raise UsageError("say which machines to drill", "--machine, --user, --sample N or --all")
    if args.command == "drill" and args.user and (args.sample or args.all):
        raise UsageError("--user goes with --machine, or alone", "drill --user NAME drills all of its machines")
    if not getattr(args, "machine", None):
        return
    from homesync_server.actions.naming import resolve_machine

    args.machine = resolve_machine(layout, args.machine, getattr(args, "user", None))
    if args.command == "drill":
        args.user = None


def _drill(layout: Layout, args: argparse.Namespace) -> int:
    from homesync_server.actions import drill

    selection = drill.Selection(args.machine, args.user, args.sample, args.all)
    with _output(args.output) as out:  # opened first: a drill's results are never lost for a bad path
        results = drill.drill(layout, selection, args.lock_wait or drill.DRILL_LOCK_WAIT)
        with contextlib.redirect_stdout(out):
            _print([r.as_dict() for r in results], args.json, _print_drills)
    failed = [r for r in results if r.result == "failed"]
    if failed:
        raise RestoreError(f"drill failed on {len(failed)} of {len(results)} machines; first: {failed[0].machine_id} "
                           f"({failed[0].name}): {failed[0].failures[0].line()}")
    return 0


def _output(path: str | None):
    """Return a context giving the file to print to: path, or standard output."""
    if not path:
        return contextlib.nullcontext(sys.stdout)
    try:
        return open(path, "w")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}",
                          "check that its directory exists and that the server's user may write there") from None


def _prune(layout: Layout, args: argparse.Namespace) -> int:
    from homesync_server.actions import prune

    results = prune.prune(layout, args.machine, args.dry_run, args.lock_wait)
    _print(results, args.json, _print_prunes)
    failed = [r for r in results if r["result"] == "failed"]
    if failed:
        raise BorgError(f"prune failed on {len(failed)} of {len(results)} machines; first: "
                        f"{failed[0]['machine_id']}: {failed[0]['reason']}")
    return 0


def _hold(layout: Layout, args: argparse.Namespace) -> None:
    from homesync_server.actions import holds

    if args.hold_command == "list":
        _print(holds.listed(layout, args.machine), args.json, _print_holds)
    elif args.hold_command == "add":
        done = holds.add(layout, args.machine, None if args.all else args.archive, args.reason)
        _print(done, args.json, lambda d: print(f"held {d['archive']} of {d['machine_id']}"
                                                + ("" if d["added"] else " (it was already)")))
    else:
        done = holds.remove(layout, args.machine, None if args.all else args.archive)
        _print(done, args.json, lambda d: print(f"lifted {d['removed']} hold(s) on {d['machine_id']}"))


def _machine(layout: Layout, args: argparse.Namespace) -> None:
    from homesync_server.actions import lifecycle, mass_change

    command = args.machine_command
    if command == "release":
        _print(mass_change.release(layout, args.machine), args.json,
               lambda f: print(f"released {f['machine_id']}: pruning applies again"))
        return
    if command == "retire":
        done = lifecycle.retire(layout, args.machine)
    elif command == "rename":
        done = lifecycle.rename(layout, args.machine, args.name)
    else:
        done = lifecycle.transfer(layout, args.machine, args.to)
    _print(done, args.json, lambda m: print(f"{m['id']}: {m['name']!r} of {m['owner']}, {m['state']}"))


def _template(layout: Layout, args: argparse.Namespace) -> None:
    from homesync_server.actions import templates

    if args.template_command == "list":
        _print(templates.listed(layout), args.json, _print_templates)
        return
    if args.template_command == "remove":
        _print(templates.remove(layout, args.name), args.json,
               lambda d: print(f"removed template {d['name']!r} ({d['id']}) and its {d['archives']} archive(s)"))
        return
    done = templates.publish(layout, args.name, Path(args.source))
    _print(done, args.json, _print_published)


def _login(layout: Layout, args: argparse.Namespace) -> None:
    from homesync_server.actions import login_limits

    if args.login_command == "list":
        _print(login_limits.listed(layout), args.json, _print_login_records)
        return
    done = login_limits.unblock(layout, args.name, args.address)
    _print(done, args.json, lambda d: print(f"unblocked {d['key']} {d['name']} ({d['attempts']} attempts counted)"))


def _print_login_records(rows: list[dict]) -> None:
    console.print_table(["KIND", "NAME", "ATTEMPTS", "BLOCKED UNTIL", "BLOCKS", "REFUSED"],
                        [[r["key"], r["name"], r["attempts"], console.human_time(r["blocked_until"])
                          if r["blocked_until"] else "-", r["blocks"], r["refused"]] for r in rows])


def _print_published(done: dict) -> None:
    print(f"published {done['name']!r} ({done['id']}{', new' if done['created'] else ''}) archive {done['archive']}"
          f": {done['files']} files, {console.human_size(done['original_size'])}")
    for warning in done["warnings"]:
        print(f"warning: {warning}")


def _print_templates(rows: list[dict]) -> None:
    console.print_table(["NAME", "ID", "ARCHIVES", "LATEST", "PUBLISHED", "FILES", "SIZE"],
                        [[r["name"], r["id"], r["archives"], r["latest"] or "-", console.human_time(r["published"]),
                          r["files"], console.human_size(r["original_size"])] for r in rows])


def _print(data: Any, as_json: bool, as_text: Callable[[Any], None]) -> None:
    if as_json:
        console.print_json(data)
    else:
        as_text(data)


def _print_drills(rows: list[dict]) -> None:
    console.print_table(
        ["MACHINE", "OWNER", "NAME", "ARCHIVE", "RESULT", "RPO", "RESTORE", "THROUGHPUT", "WHAT FAILED"],
        [[r["machine_id"], r["owner"], r["name"], r["archive"] or "-", r["result"].upper(),
          _duration(r["rpo_seconds"]), _duration(r["extract_seconds"]),
          console.human_size(r["throughput"]) + "/s" if r["throughput"] else "-",
          "; ".join(f"{f['stage']}: {f['message']}" for f in r["failures"]) or "-"] for r in rows])


def _print_prunes(rows: list[dict]) -> None:
    console.print_table(
        ["MACHINE", "OWNER", "NAME", "RESULT", "KEPT", "DELETED", "WHY"],
        [[r["machine_id"], r["owner"], r["name"], r["result"], len(r["kept"]), len(r["deleted"]), r["reason"] or "-"]
         for r in rows])


def _print_holds(rows: list[dict]) -> None:
    console.print_table(["MACHINE", "ARCHIVE", "SINCE", "BY", "REASON"],
                        [[h["machine_id"], "all" if h["archive"] == "*" else h["archive"],
                          console.human_time(h["added"]), h["added_by"], h["reason"]] for h in rows])


def _print_reindex(result: dict) -> None:
    print(f"indexed {len(result['machines'])} machines and {result['archives']} archives")
    if result["set_aside"]:
        print(f"the old index was kept as {result['set_aside']}")
    for problem in result["problems"]:
        print(f"problem: {problem}")
    for note in result["approximated"]:
        print(f"approximated: {note}")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else duration(seconds)
