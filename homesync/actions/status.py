"""`homesync status`: what the background agent is doing and why, asked over its status
socket; when no agent answers, the last backup this computer made, from its state file.
"""

from __future__ import annotations

import time

from homesync import config as agent_config, console, exits, state_files
from homesync.agent import control, record
from homesync.config import Paths
from homesync.errors import ConfigError, NotEnrolledError, NotSetUpError
from homesync.durations import duration

NOT_SET_UP = NotSetUpError.exit_code


def status(paths: Paths) -> tuple[dict, int]:
    """Return the agent's status and the exit code: 0, exits.AGENT_NOT_RUNNING, or
    NOT_SET_UP if the agent runs on a computer that is not set up yet (it waits for
    `homesync setup`)."""
    try:
        answer = control.ask(paths, "status")
        return answer, NOT_SET_UP if answer.get("set_up") is False else 0
    except control.AgentNotRunning:
        answer = {"agent": {"running": False}, "last_backup": record.read_last_backup(paths)}
        if not _check_config(paths):
            answer["set_up"] = False
        answer["warnings"] = state_files.take_notes()
        return answer, exits.AGENT_NOT_RUNNING


def _check_config(paths: Paths) -> bool:
    """Return whether this computer is enrolled; raise the configuration's own error
    when it is what keeps the agent from running."""
    try:
        agent_config.load(paths)
    except NotEnrolledError:
        return False  # not enrolled: the status says when the last backup was, if any
    except ConfigError as e:
        raise ConfigError(f"the agent cannot run: {e.message}", "fix the file, then start the agent") from None
    return True


def render(status: dict) -> str:
    """Return the status as text for people."""
    if not status["agent"]["running"]:
        text = f"homesync agent is not running; last backup: {_last_backup(status['last_backup'])}"
        text += "; this computer is not set up yet (see `homesync setup`)" if status.get("set_up") is False else ""
        return "\n".join([text] + [f"warning: {w}" for w in status.get("warnings", [])])
    if status.get("set_up") is False:
        return (f"homesync agent is running (pid {status['agent']['pid']}, since "
                f"{console.human_time(status['agent']['started'])}); {status['reason']['text']}")
    now = status["now"]
    lines = [("Agent", f"running since {console.human_time(status['agent']['started'])} "
                       f"(pid {status['agent']['pid']}, {status['machine']})"),
             ("State", _state(status)),
             ("Network", _network(status["network"], status["server"])),
             ("Power", _power(status["power"])),
             ("Changes", _changes(status["dirty"])),
             ("Last backup", _when(status["last_success"], now)),
             ("Last attempt", _attempt(status, now)),
             ("Watching", _watching(status["watcher"]["mode"]))]
    if status["state"] != "backing up" and status["reason"]:
        lines.insert(2, ("Why not now", status["reason"]["text"]))
    if status.get("next_check"):
        lines.append(("Next check", f"{console.human_time(status['next_check'])} (in {duration(status['next_check'] - now)})"))
    width = max(len(label) for label, _ in lines) + 2
    text = [f"{label + ':':<{width}}{value}" for label, value in lines]
    if "policy" in status:
        text += _policy(status["policy"], width)
    return "\n".join(text + [f"warning: {w}" for w in status["warnings"]])


def _state(status: dict) -> str:
    job = status["job"]
    if status["state"] != "backing up" or job is None:
        return status["state"]
    done = f"{console.human_size(job['bytes'])}, {job['files']} files"
    progress = f"about {job['percent']:.0f}% ({done})" if job["percent"] is not None else f"{done} so far"
    speed = f"; {console.human_size(job['rate'])}/s" if job.get("rate") else ""
    if job.get("seconds_left") is not None:
        speed += f", about {duration(job['seconds_left'])} left"
    stopping = f"; stopping: {job['stopping']}" if job["stopping"] else ""
    return f"backing up, {progress}, because {job['why']}{speed}{stopping}"


def _network(network: dict, server: dict) -> str:
    answered = {True: "it answers", False: "it does not answer", None: "not checked yet"}[server["reachable"]]
    if network.get("server_answers_is_corporate"):
        return (f"no corporate-network rule is set (here or in the fleet policy): the backup server answering "
                f"counts as the corporate link ({server['address']}: {answered})")
    if not network["known"]:
        answered = {True: "it answers", False: "it does not answer", None: "not checked yet"}[server["reachable"]]
        return (f"NetworkManager is not available ({network['detail'].removeprefix('NetworkManager not available: ')});"
                f" backing up whenever the server is reachable ({server['address']}: {answered})")
    if network["on_corporate"]:
        metered = " (metered)" if network["metered"] else ""
        return f"on the corporate network via {network['via']}{metered}"
    return f"not on the corporate network ({network['detail']})"


def _policy(policy: dict, width: int) -> list[str]:
    """Return the fleet policy's lines: its version and state, then where the settings not
    at their defaults come from (the policy's layers, config.toml, or ignored)."""
    version = "none yet" if policy["version"] is None else f"version {policy['version']}"
    lines = [f"{'Fleet policy:':<{width}}{version} ({policy['detail']})"]
    sources = sorted(policy["sources"].items())
    from_policy = [f"{key} ({source})" for key, source in sources if source not in ("default", "local override")
                   and not source.startswith("local")]
    local = [key for key, source in sources if source == "local override"]
    ignored = [key for key, source in sources if source.startswith("local (ignored")]
    for label, keys in (("from the policy", from_policy), ("from your config.toml", local),
                        ("ignored in your config.toml (not yours to override)", ignored)):
        if keys:
            lines.append(f"  {label}: {', '.join(keys)}")
    return lines


def _power(power: dict) -> str:
    if not power["known"]:
        return "unknown (treated as mains)"
    if not power["on_battery"]:
        return "on mains"
    return "on battery" if power["percentage"] is None else f"on battery at {power['percentage']:.0f}%"


def _changes(dirty: dict) -> str:
    text = f"{dirty['count']} since the last backup"
    if dirty["possibly_dirty"]:
        text += f" (and possibly more: {dirty['possible_reason'] or 'changes may have been missed'})"
    return text


def _when(ts: float | None, now: float) -> str:
    return "never" if not ts else f"{console.human_time(ts)} ({console.human_age(ts, now)})"


def _attempt(status: dict, now: float) -> str:
    text = _when(status["last_attempt"], now)
    result = status["last_result"]
    if result:
        text += f", {result['result']}" + (f": {result['error']}" if result.get("error") else "")
    return text


def _watching(mode: str) -> str:
    return {"inotify": "every change (inotify)", "scan": "periodic scans (see the warning)"}.get(mode, mode)


def _last_backup(report: dict | None) -> str:
    if not report:
        return "none on record"
    end = report.get("end")
    text = f"{console.human_time(end)} ({console.human_age(end, time.time())}), {report.get('result', '?')}"
    return text + (f": {report['error']}" if report.get("error") else "")
