"""`homesync-server policy show|set|edit|history|group`: argument parsing and output of
the fleet-policy commands (issue 19); each calls homesync_server.actions.policy."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from homesync import console
from homesync.errors import ConfigError, UsageError
from homesync_server.config import Layout


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add `policy` and its subcommands."""
    policy = commands.add_parser("policy", help="the fleet policy agents follow (site < group < user < machine)")
    actions = policy.add_subparsers(dest="policy_command", required=True)

    def sub(name: str, help: str, layer: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help)
        p.add_argument("--data", help="data directory (default: $HOMESYNC_SERVER_DATA)")
        p.add_argument("--json", action="store_true")
        if layer:
            which = p.add_mutually_exclusive_group()
            which.add_argument("--group", metavar="G")
            which.add_argument("--user", metavar="NAME")
            which.add_argument("--machine", metavar="ID")
        return p

    sub("show", "the effective policy and where each value comes from")
    sub("set", "replace a layer (the site's unless --group/--user/--machine) with a TOML file").add_argument(
        "file", help="TOML with the agent's own tables ([network], [agent], [backup], [server], [policy]); - for stdin")
    sub("edit", "edit a layer in $EDITOR; stored when it is valid")
    sub("history", "every version: who, when, what", layer=False)
    group = sub("group", "put users in policy groups (beside the directory's)", layer=False)
    group.add_argument("action", choices=("add", "remove", "list"))
    group.add_argument("group", nargs="?")
    group.add_argument("users", nargs="*")


def run(layout: Layout, args: argparse.Namespace) -> int:
    """Run one policy command; print its result."""
    from homesync_server.actions import policy

    command = args.policy_command
    scope, target = _layer(args)
    if command == "show":
        shown = policy.show(layout, args.machine, args.user, args.group)
        _print_show(shown) if not args.json else console.print_json(shown)
    elif command == "set":
        text = sys.stdin.read() if args.file == "-" else _read(args.file)
        _print_set(policy.set_layer(layout, text, args.file, scope, target), args.json)
    elif command == "edit":
        _print_set(_edit(layout, scope, target), args.json)
    elif command == "history":
        rows = policy.history(layout)
        console.print_json(rows) if args.json else console.print_table(
            ["VERSION", "WHEN", "WHO", "LAYER", "CHANGED"],
            [[r["version"], console.human_time(r["at"]), r["actor"], f"{r['scope']} {r['target']}".strip(),
              ", ".join(r["changed"])] for r in rows])
    else:
        _group(layout, args)
    return 0


def _layer(args: argparse.Namespace) -> tuple[str, str]:
    for scope in ("group", "user", "machine"):
        if getattr(args, scope, None):
            return scope, getattr(args, scope)
    return "site", ""


def _read(name: str) -> str:
    try:
        return Path(name).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {name}: {getattr(e, 'strerror', None) or e}") from None


def _edit(layout: Layout, scope: str, target: str) -> dict:
    """Open the layer in $EDITOR (then $VISUAL, vi); store it if it changed and is valid."""
    from homesync_server.actions import policy

    version, text = policy.current_layer(layout, scope, target)
    editor = os.environ.get("EDITOR") or os.environ.get("VISUAL") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".toml", prefix="homesync-policy-") as file:
        file.write(f"# fleet policy, {scope} {target}".rstrip() + f" (version {version})\n" + text)
        file.flush()
        if subprocess.call([*editor.split(), file.name]) != 0:
            raise UsageError(f"the editor {editor!r} failed; nothing was stored")
        edited = Path(file.name).read_text()
    return policy.set_layer(layout, edited, "the edited policy", scope, target, expect_version=version)


def _group(layout: Layout, args: argparse.Namespace) -> None:
    from homesync_server.actions import policy

    if args.action == "list":
        rows = policy.group_list(layout)
        console.print_json(rows) if args.json else console.print_table(
            ["GROUP", "USER"], [[r["group_name"], r["user"]] for r in rows])
        return
    if not args.group or not args.users:
        raise UsageError(f"policy group {args.action} needs a group and at least one user")
    done = [policy.set_group(layout, args.group, user, args.action == "add") for user in args.users]
    if args.json:
        console.print_json(done)
    for row in [] if args.json else done:
        verb = "added to" if row["member"] else "removed from"
        print(f"{row['user']} {verb} {row['group']}" + ("" if row["changed"] else " (no change)"))


def _print_set(result: dict, as_json: bool) -> None:
    if as_json:
        console.print_json(result)
    elif result["changed"]:
        print(f"policy version {result['version']}: changed {', '.join(result['changed'])}")
    else:
        print(f"nothing changed (policy version {result['version']})")


def _print_show(shown: dict) -> None:
    who = ", ".join(f"{k} {v}" for k, v in shown["for"].items()) or "the site"
    groups = f" (groups: {', '.join(shown['groups'])})" if shown["groups"] else ""
    print(f"fleet policy version {shown['version']} for {who}{groups}")
    rows = [[key, console_value(value), shown["sources"][key]] for key, value in sorted(shown["values"].items())]
    if rows:
        console.print_table(["SETTING", "VALUE", "FROM"], rows)
    else:
        print("no setting is set: agents use their own configuration and the defaults")


def console_value(value: object) -> str:
    import json
    return json.dumps(value, ensure_ascii=False)
