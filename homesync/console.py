"""What both command lines share: one-line errors with exit codes, JSON and table
output, human sizes and ages, and reading a password without it touching argv.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import sys
import time
from functools import lru_cache
from typing import Any, Callable, Sequence

from homesync import exits
from homesync.durations import duration
from homesync.errors import HomesyncError, UsageError


_bar = {"open": False}  # a progress bar is on stderr's last line, not ended yet


def run_main(program: str, body: Callable[[], int | None], debug: bool) -> int:
    """Run a command body; turn a HomesyncError into one line on stderr and its exit
    code, Ctrl-C into 130, anything else into a short line (a traceback with --debug).
    A progress bar the failure cut short is ended first: the line is one of its own."""
    try:
        try:
            return body() or 0
        finally:
            end_bar()
    except HomesyncError as e:
        if debug:
            logging.exception("failed")
        print(f"{program}: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except Exception as e:  # an unexpected bug: still one line unless debugging
        if debug:
            raise
        print(f"{program}: internal error: {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        return exits.INTERNAL


def setup_logging(debug: bool, verbose: bool = False) -> None:
    """Log to stderr: plain lines under systemd (journald adds the time), else with time."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    if not debug:  # paramiko logs a lost connection's traceback from its own thread; we say it in one line
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def read_password(from_stdin: bool, prompt: str = "Password: ") -> str:
    """Return a password from the first line of stdin or from a prompt on the terminal;
    raise UsageError if there is neither, or if it is empty."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(prompt)
    else:
        raise UsageError("no terminal to ask for the password", "pass --password-stdin and pipe it in")
    if not password:
        raise UsageError("an empty password is refused")
    return password


def print_json(data: Any) -> None:
    """Print data as JSON that is always valid UTF-8 (see json_text)."""
    sys.stdout.write(json_text(data) + "\n")


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def json_text(data: Any) -> str:
    """Return data as indented JSON. A name that is not UTF-8 (decoded by Python with
    surrogateescape: byte 0xNN is U+DCNN) keeps each such byte as the escape \\udcNN, so
    the text is valid UTF-8 and `os.fsencode(json.loads(text)[...])` gives the bytes back."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable)
    return _UNDECODABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _jsonable(value: Any) -> Any:
    """A result object (homesync.results) as its JSON form; anything else as its text."""
    as_json = getattr(value, "as_json", None)
    return as_json() if callable(as_json) else str(value)


def printable(text: str) -> str:
    """Return text as a terminal shows it safely: control, format (bidi, zero-width) and
    line-separating characters written as escapes (\\x1b, \\u202e), so that a name
    from a client can neither move the cursor nor forge a row."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as aligned columns under headers (each cell made printable)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else printable(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def human_size(n: int | float | None) -> str:
    """Return n bytes in words ("-" for None): B, KB, MB, GB, then TB for anything
    bigger (written out rather than looped: a report words 200,000 sizes)."""
    if n is None:
        return "-"
    if -1000 < n < 1000:
        return f"{n:.0f} B"
    n /= 1000
    if -1000 < n < 1000:
        return f"{n:.1f} KB"
    n /= 1000
    if -1000 < n < 1000:
        return f"{n:.1f} MB"
    n /= 1000
    if -1000 < n < 1000:
        return f"{n:.1f} GB"
    return f"{n / 1000:.1f} TB"


def human_time(ts: float | None) -> str:
    """Return a Unix time as local time to the minute ("never" for None or 0)."""
    if not ts:
        return "never"
    return _local_minute(int(ts // 60))


@lru_cache(maxsize=1 << 16)
def _local_minute(minute: int) -> str:
    # Times crowd into few minutes: a report of 100,000 machines needs a few thousand strftime calls.
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(minute * 60))


def human_age(ts: float | None, now: float | None = None) -> str:
    """Return how long before now (default: the current time) ts was, in its largest
    unit (durations.duration): "3 d ago", "5.2 h ago", "40 s ago"; "never" for None or 0."""
    if not ts:
        return "never"
    return duration((now or time.time()) - ts) + " ago"


def end_bar() -> None:
    """End the line of a progress bar still drawn (a backup or restore that failed)."""
    if _bar["open"]:
        _bar["open"] = False
        sys.stderr.write("\n")
        sys.stderr.flush()


def progress_printer(quiet: bool) -> Callable[[float, str], None] | None:
    """Return a callback drawing a progress bar on stderr, or None when stderr is not a
    terminal (or output is JSON)."""
    if quiet or not sys.stderr.isatty():
        return None

    def draw(fraction: float, detail: str) -> None:
        width = 30
        filled = int(width * max(0.0, min(1.0, fraction)))
        line = f"\r[{'#' * filled}{' ' * (width - filled)}] {fraction * 100:5.1f}% {detail[:40]:<40}"
        _bar["open"] = fraction < 1.0
        sys.stderr.write(line + ("" if _bar["open"] else "\n"))
        sys.stderr.flush()
    return draw


def backup_progress(quiet: bool, expected_bytes: int | None,
                    clock: Callable[[], float] = time.monotonic) -> Callable[[dict], None] | None:
    """Return a callback for borg's events that draws the backup's progress with the
    restore's bar (files and bytes done, rate, time left estimated from expected_bytes,
    the size of the last backup), or None when there is no terminal to draw on."""
    draw = progress_printer(quiet)
    if draw is None:
        return None
    started = clock()

    def on_event(event: dict) -> None:
        if event.get("type") != "archive_progress":
            return
        if event.get("finished"):
            draw(1.0, "done")
            return
        done, files = int(event.get("original_size") or 0), int(event.get("nfiles") or 0)
        draw(*backup_progress_line(done, files, clock() - started, expected_bytes))
    return on_event


def backup_progress_line(done: int, files: int, seconds: float, expected: int | None) -> tuple[float, str]:
    """Given bytes and files done, the seconds so far and the expected size (or None),
    return the bar's fraction (below 1 until borg says it finished) and its text."""
    rate = done / seconds if seconds > 0.5 else 0.0
    text = f"{human_size(done)} {files} files"  # short: the bar's text has 40 columns
    if rate:
        text += f" {human_size(rate)}/s"
    if not expected:
        return 0.0, text
    fraction = min(0.99, done / expected)
    if rate and done < expected:
        text += f" ~{duration((expected - done) / rate)}"
    return fraction, text

