"""`homesync-server`: argument parsing for the admin commands; each command calls one
action and prints its result (a table, or JSON with --json)."""

from __future__ import annotations

import argparse
import sys

from homesync import console, exits
from homesync_server import cli_operations
from homesync_server.config import DEFAULT_LISTEN, resolve_data_dir

# The report commands run from cron and monitoring, so they must start fast: the other
# actions (and through them paramiko and the key handling) are imported only by the
# commands that use them.
REPORT_COMMANDS = ("report", "audit", "metrics")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command (parsing imports no action)."""
    parser = argparse.ArgumentParser(prog="homesync-server", description="homesync backup server")
    parser.add_argument("--debug", action="store_true", help="log everything, show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--data", help="data directory (default: $HOMESYNC_SERVER_DATA)")
        return sub

    init = command("init", "create a data directory; prints the host key fingerprint")
    init.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to listen on")
    serve_p = command("serve", "run the server in the foreground")
    serve_p.add_argument("--listen", help="HOST:PORT (default: from server.toml)")
    command("fingerprint", "print the host key fingerprint")
    user = commands.add_parser("user", help="manage local users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="add a local user (password from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--full-name", default="", help="the person's name, e.g. \"Joe Bloggs\" (setup suggests "
                                                     "\"Joe's laptop\" from it)")
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--data")
    passwd = user.add_parser("passwd", help="set a local user's password (from a prompt or stdin, never argv)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.add_argument("--data")
    removed = user.add_parser("remove", help="remove a local user (refused while they have active machines)")
    removed.add_argument("name")
    removed.add_argument("--retire-machines", action="store_true", help="retire the user's active machines too")
    removed.add_argument("--json", action="store_true")
    removed.add_argument("--data")
    listed = user.add_parser("list", help="users (local or from the directory) and their machines")
    listed.add_argument("--json", action="store_true")
    listed.add_argument("--data")
    machines = command("machines", "list machines and their newest backup")
    machines.add_argument("--user")
    machines.add_argument("--json", action="store_true")
    listed_nodes = command("nodes", "the server nodes on this index: heartbeat, sessions, version, state, dead or alive")
    listed_nodes.add_argument("--json", action="store_true")
    doctor = command("doctor", "check a data directory (owner, modes, keys, index, free space, borg); exit 27: problems")
    doctor.add_argument("--json", action="store_true")
    _add_report_commands(commands, command)
    cli_operations.add_commands(commands)  # drill, prune, hold, reindex, machine, template (issues 6, 7)
    return parser


def _add_report_commands(commands, command) -> None:
    """Add `report`, `audit verify` and `metrics` (issue 5)."""
    from homesync_server.actions.report import FORMATS  # light: no SSH stack, no other action

    made = command("report", "who is protected and who is not; what happened (exit 6: a machine is critical)")
    made.add_argument("--format", choices=sorted(FORMATS), default="table")
    made.add_argument("--json", action="store_true", help="same as --format json")
    made.add_argument("--output", help="write to FILE atomically instead of printing")
    made.add_argument("--user", help="only this user's machines and activity")
    made.add_argument("--since", help="activity from DATE (2026-11-01, 2026-11-01T08:00 or 7d; default 30d)")
    made.add_argument("--until", help="activity until DATE (default now)")
    verify = commands.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    verify = verify.add_parser("verify", help="check the audit log's hash chain (exit 7: broken)")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--data")
    exported = command("metrics", "Prometheus metrics, for node_exporter's textfile collector")
    exported.add_argument("--output", help="write to FILE atomically instead of printing")


def _run_report_command(layout, args: argparse.Namespace) -> int:
    """Run `report`, `audit verify` or `metrics`; return the exit status."""
    from homesync_server.actions import report

    if args.command == "report":
        return report.report(layout, "json" if args.json else args.format, args.output, args.user,
                             args.since, args.until)
    if args.command == "metrics":
        report.write_metrics(layout, args.output)
        return 0
    verdict = report.verify_audit(layout)
    if args.json:
        console.print_json(verdict.as_dict())
    elif verdict.intact:
        print(f"audit log intact: {verdict.checked} events, newest #{verdict.head_id} {verdict.head_hash}")
    else:
        print(f"audit log broken at row {verdict.broken.row_id} ({verdict.broken.problem}): "
              f"{verdict.broken.message}; the {verdict.checked} events before it are intact")
    return 0 if verdict.intact else report.EXIT_BROKEN_CHAIN


def dispatch(args: argparse.Namespace) -> int:
    layout = resolve_data_dir(args.data)
    from homesync_server.owner import run_as_data_owner

    if args.command == "doctor":  # as whoever runs it: root sees what the owner cannot
        return _doctor(layout, args.json)
    refused = run_as_data_owner(layout, args.command, writes=_writes(args))
    if refused:
        print(f"homesync-server: error: {refused}", file=sys.stderr)
        return exits.WRONG_USER
    if args.command in REPORT_COMMANDS:
        return _run_report_command(layout, args)
    from homesync_server.actions import listing, serve, setup

    if args.command == "init":
        print(setup.init(layout, args.listen))
    elif args.command == "fingerprint":
        print(setup.host_fingerprint(layout))
    elif args.command == "serve":
        with serve.metrics_endpoint(layout):
            serve.serve(layout, args.listen)
    elif args.command == "user" and args.user_command == "list":
        _print_users(listing.users(layout), args.json)
    elif args.command == "user" and args.user_command in ("passwd", "remove"):
        _change_user(layout, args)
    elif args.command == "user":
        password = console.read_password(args.password_stdin, f"Password for {args.name}: ")
        setup.add_local_user(layout, args.name, password, args.admin, args.full_name)
        print(f"added user {args.name}" + (" (admin)" if args.admin else ""))
    elif args.command == "machines":
        _print_machines(listing.machines(layout, args.user), args.json)
    elif args.command == "nodes":
        _print_nodes(listing.nodes(layout), args.json)
    elif args.command in cli_operations.COMMANDS:
        return cli_operations.run(layout, args)
    return 0


def _change_user(layout, args: argparse.Namespace) -> None:
    """Run `user passwd` or `user remove`."""
    from homesync_server.actions import users

    if args.user_command == "passwd":
        users.set_password(layout, args.name, console.read_password(args.password_stdin,
                                                                    f"New password for {args.name}: "))
        print(f"changed the password of {args.name}")
        return
    done = users.remove(layout, args.name, args.retire_machines)
    if args.json:
        console.print_json(done)
    else:
        print(f"removed user {done['user']}" + (f"; retired {', '.join(done['retired'])}" if done["retired"] else ""))


def _doctor(layout, as_json: bool) -> int:
    """Run `doctor`: print every finding; return DOCTOR_PROBLEMS, with the first problem
    on stderr, when one is a problem."""
    from homesync_server.actions import doctor

    findings = doctor.doctor(layout)
    if as_json:
        console.print_json(doctor.as_dicts(findings))
    else:
        for f in findings:
            print(f"{'ok' if f.ok else 'PROBLEM':8} {f.check}: {f.message}" + (f"\n         fix: {f.fix}" if f.fix else ""))
    problems = [f for f in findings if not f.ok]
    if problems:
        first = problems[0]
        print(f"homesync-server: {len(problems)} problem(s) in {layout.data}; first: {first.check}: "
              f"{first.message} (fix: {first.fix})", file=sys.stderr)
        return exits.DOCTOR_PROBLEMS
    return 0


def _writes(args: argparse.Namespace) -> bool:
    """Return whether the command may write to the data directory (`user list` and
    `hold list`, `template list`, `login list` only read)."""
    from homesync_server.owner import READ_ONLY_COMMANDS

    if args.command in READ_ONLY_COMMANDS:
        return False
    sub = next((v for k, v in vars(args).items() if k.endswith("_command")), None)
    return sub != "list"


def _print_machines(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(
        ["ID", "OWNER", "NAME", "HOST", "LAST BACKUP", "ARCHIVES", "SIZE", "STATE"],
        [[r["id"], r["owner"] + (" (gone)" if r["owner_gone"] else ""), r["name"], r["hostname"],
          console.human_age(r["last_backup"]), r["archives"], console.human_size(r["last_size"]),
          r["state"]] for r in rows])


def _print_nodes(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(
        ["NODE", "ADDRESS", "STATE", "HEARTBEAT", "SESSIONS", "VERSION", "LEASES"],
        [[r["id"], r["address"], "DEAD" if r["dead"] else r["state"], f"{r['age']:.0f} s ago", r["sessions"],
          r["version"], ", ".join(r["leases"]) or "-"] for r in rows])


def _print_users(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(
        ["USER", "NAME", "ADMIN", "MACHINES", "LAST BACKUP", "STATUS"],
        [[r["name"], r["display_name"], "yes" if r["admin"] else "", ", ".join(r["machines"]) or "-",
          console.human_age(r["last_backup"]), "gone from the directory" if r["gone"] else "active"]
         for r in rows])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    console.setup_logging(args.debug, verbose=getattr(args, "command", "") == "serve")
    return console.run_main("homesync-server", lambda: dispatch(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
