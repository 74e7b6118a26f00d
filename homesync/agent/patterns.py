"""borg's exclusion pattern styles (fm: the default, sh:, pp:, pf:, re:) as Python
matchers over paths relative to the backed-up source, so the watcher ignores exactly
what `borg create --exclude` leaves out. Pure; checked against borg's own dry runs.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable

from homesync.errors import ConfigError

Matcher = Callable[[str], bool]


def compile_pattern(pattern: str) -> Matcher:
    """Given a borg --exclude pattern, return a function of a relative path ("Documents/a.txt")
    that says whether the pattern excludes it; raise ConfigError for an unknown style."""
    style, body = "fm", pattern
    if len(pattern) > 2 and pattern[2] == ":" and pattern[:2].isalnum():
        style, body = pattern[:2], pattern[3:]
    make = _STYLES.get(style)
    if make is None:
        raise ConfigError(f"unknown borg pattern style {style!r} in {pattern!r}", "use fm:, sh:, pp:, pf: or re:")
    try:
        return make(body)
    except re.error as exc:
        raise ConfigError(f"invalid pattern {pattern!r}: {exc}") from None


def _fnmatch(body: str) -> Matcher:
    """fm: like fnmatch, "*" crossing "/"; a match of the whole path or of a leading directory."""
    regex = re.compile(fnmatch.translate(_anchored(body, "*")))
    return lambda path: regex.match(path + "/") is not None


def _shell(body: str) -> Matcher:
    """sh: "*" and "?" stay within a name, "**/" spans directories; whole path or leading directory."""
    regex = re.compile("(?ms)" + _shell_regex(_anchored(body, "**/*")) + r"\Z")
    return lambda path: regex.match(path + "/") is not None


def _prefix(body: str) -> Matcher:
    """pp: the path itself or anything below it."""
    prefix = (os.path.normpath(body).rstrip("/") + "/").lstrip("/")
    return lambda path: (path + "/").startswith(prefix)


def _full(body: str) -> Matcher:
    """pf: exactly this path."""
    full = os.path.normpath(body).lstrip("/")
    return lambda path: path == full


def _regex(body: str) -> Matcher:
    """re: a regular expression found anywhere in the path."""
    regex = re.compile(body)
    return lambda path: regex.search(path) is not None


def _anchored(body: str, tail: str) -> str:
    """Return the pattern extended so that it also matches below a matching directory.

    A trailing "/" means the directory's contents only, not the directory itself.
    """
    if body.endswith("/"):
        body = os.path.normpath(body).rstrip("/") + "/" + tail + "/"
    else:
        body = os.path.normpath(body) + "/" + tail
    return body.lstrip("/")


def _shell_regex(pattern: str) -> str:
    """Translate a shell pattern with "**/" into a regular expression (no anchors)."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char == "*" and pattern.startswith("*/", i):
            out.append("(?:[^/]*/)*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = _class_end(pattern, i)
            if end is None:
                out.append("\\[")
            else:
                body = pattern[i:end].replace("\\", "\\\\")
                i = end + 1
                body = "^" + body[1:] if body[0] == "!" else ("\\" + body if body[0] == "^" else body)
                out.append(f"[{body}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _class_end(pattern: str, start: int) -> int | None:
    """Return the index of the "]" closing a character class opened before start, or None."""
    j = start
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 1
    return j if j < len(pattern) else None


_STYLES: dict[str, Callable[[str], Matcher]] = {
    "fm": _fnmatch, "sh": _shell, "pp": _prefix, "pf": _full, "re": _regex,
}
