"""`homesync-server`: argument parsing for the admin commands; each command calls one
action and prints its result (a table, or JSON with --json)."""

from __future__ import annotations

import argparse
import sys

from homesync import console
from homesync_server.actions import listing, serve, setup
from homesync_server.config import DEFAULT_LISTEN, resolve_data_dir


def build_parser() -> argparse.ArgumentParser:
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
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--data")
    listed = user.add_parser("list", help="users (local or from the directory) and their machines")
    listed.add_argument("--json", action="store_true")
    listed.add_argument("--data")
    machines = command("machines", "list machines and their newest backup")
    machines.add_argument("--user")
    machines.add_argument("--json", action="store_true")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    layout = resolve_data_dir(args.data)
    if args.command == "init":
        print(setup.init(layout, args.listen))
    elif args.command == "fingerprint":
        print(setup.host_fingerprint(layout))
    elif args.command == "serve":
        serve.serve(layout, args.listen)
    elif args.command == "user" and args.user_command == "list":
        _print_users(listing.users(layout), args.json)
    elif args.command == "user":
        password = console.read_password(args.password_stdin, f"Password for {args.name}: ")
        setup.add_local_user(layout, args.name, password, args.admin)
        print(f"added user {args.name}" + (" (admin)" if args.admin else ""))
    elif args.command == "machines":
        _print_machines(listing.machines(layout, args.user), args.json)
    return 0


def _print_machines(rows: list[dict], as_json: bool) -> None:
    if as_json:
        console.print_json(rows)
        return
    console.print_table(
        ["ID", "OWNER", "NAME", "HOST", "LAST BACKUP", "ARCHIVES", "SIZE", "STATE"],
        [[r["id"], r["owner"] + (" (gone)" if r["owner_gone"] else ""), r["name"], r["hostname"],
          console.human_age(r["last_backup"]), r["archives"], console.human_size(r["last_size"]),
          r["state"]] for r in rows])


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
    args = build_parser().parse_args(argv)
    console.setup_logging(args.debug, verbose=getattr(args, "command", "") == "serve")
    return console.run_main("homesync-server", lambda: dispatch(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
