"""The exit codes of the two executables: one table each, every code one meaning.

The errors in `errors.py` carry the codes both executables share; the outcomes that are
not errors (the agent not running, a critical machine in the report, a broken audit
chain) have codes of their own, each in the table of the one executable that returns
it. docs/architecture.md shows both tables; a test keeps the three in step.
"""

from __future__ import annotations

OK = 0
AGENT_NOT_RUNNING = 5  # homesync status / pause / resume / stop: no agent answered
REPORT_CRITICAL = 6    # homesync-server report: a machine is critical (a monitoring check's alarm)
AUDIT_BROKEN = 7       # homesync-server audit verify: the hash chain is broken
WRONG_USER = 26        # homesync-server: a command that writes, run by neither root nor the data's owner
DOCTOR_PROBLEMS = 27   # homesync-server doctor: the data directory has problems (each with its fix)
INTERNAL = 70          # a bug (EX_SOFTWARE): the line says to run with --debug
INTERRUPTED = 130      # Ctrl-C (128 + SIGINT)

# What each code means, for whichever executable returns it; a code never means two things.
MEANINGS: dict[int, str] = {
    OK: "success",
    1: "an error of no more specific kind",
    2: "usage: bad arguments, a bad name, a bad fingerprint format, a bad `--path`",
    3: "configuration: not enrolled, a bad config file",
    4: "conflict: the name is taken, already enrolled",
    AGENT_NOT_RUNNING: "the agent is not running (`status` still prints the last backup)",
    REPORT_CRITICAL: "`report`: a machine is critical (or never backed up since enrolment long ago)",
    AUDIT_BROKEN: "`audit verify`: the audit log's hash chain is broken (the line names the row)",
    10: "not found: a machine, an archive, a template, a user, a `--path` the archive does not hold, "
        "a `find` pattern matching nothing, a file `versions` has no backup of",
    11: "repository locked",
    12: "authentication failed, or not allowed",
    13: "the server's host key does not match the pinned fingerprint",
    14: "the backup server is unreachable, stopped answering, or is busy (too many sessions)",
    15: "protocol error between client and server",
    16: "the directory (LDAP) is unavailable",
    17: "too many failed logins (account or address blocked for a while), or too many at once",
    18: "this computer's key was replaced: another computer adopted the machine (by which, when)",
    19: "the server's index is damaged: run `homesync-server reindex --force`",
    20: "borg failed",
    21: "a restore (or, on the server, a drill) failed: target is a file, verification failed",
    22: "an `--output` file cannot be written: the line names the path",
    23: "the server may not read or write files of the repository (their owner or mode changed)",
    24: "this machine was retired by an admin (when)",
    25: "disk full: the backup server's (repository, index) or this computer's (restore target)",
    28: "`policy edit`: the fleet policy got a new version while it was being edited (an invalid policy is 3)",
    29: "`homesync setup`: the flags make no single choice (two of `--new`/`--replace`/`--clone`/`--template`, "
        "`--as` or `--machine` with the wrong one, no choice and no terminal)",
    30: "this computer is not set up yet (the image's site file names the server): run `homesync setup`; "
        "`status` while the agent waits for it",
    32: "the backup server cannot read its index (damaged while it runs): nothing to do on the computer, "
        "the server's admin rebuilds it",
    33: "the backup server's index (its PostgreSQL database) is unavailable: nothing was written, try again "
        "later (the agent keeps its reports queued)",
    34: "a job that runs once at a time (drills, a mass-change assessment) runs now on another node (the "
        "line names it; its lease in the index expires if that node died)",
    WRONG_USER: "a command that writes was run by a user who is neither root nor the data directory's owner "
                "(the line says `sudo -u OWNER …`)",
    DOCTOR_PROBLEMS: "`doctor` found problems in the data directory (each with its fix on stdout)",
    INTERNAL: "internal error (a bug): run with --debug and report the traceback",
    INTERRUPTED: "interrupted",
}

# The client meets every error the server sends over the wire, so its table holds all
# but the server's own outcomes and its local `--output` files.
HOMESYNC = {c: m for c, m in MEANINGS.items() if c not in (REPORT_CRITICAL, AUDIT_BROKEN, 22, 28, WRONG_USER,
                                                            DOCTOR_PROBLEMS, 34)}
# The admin command line talks to no server and holds no machine key.
HOMESYNC_SERVER = {c: m for c, m in MEANINGS.items()
                   if c not in (AGENT_NOT_RUNNING, 13, 14, 15, 17, 18, 24, 29, 30, 32)}

TABLES = {"homesync": HOMESYNC, "homesync-server": HOMESYNC_SERVER}
