"""`homesync-server index migrate --to URL`: copy the data directory's index (the SQLite
file) into an empty PostgreSQL database in one transaction, then check the copy: every
table as many rows, the audit hash chain intact. The server keeps using the old index
until [index] url in server.toml names the new one.
"""

from __future__ import annotations

import time
from typing import Any

from homesync.errors import UsageError
from homesync_server import index_store
from homesync_server.actions.reindex import refuse_while_serving
from homesync_server.actions.report import verify_chain
from homesync_server.config import Layout


def migrate(layout: Layout, to_url: str) -> dict[str, Any]:
    """Copy the index into the empty database at to_url; return the rows copied per
    table, the seconds it took and the copy's audit verdict. Raise ConflictError if
    the server runs or the target is not empty, UsageError if to_url's engine cannot
    take a copy, IndexUnavailableError if it does not answer."""
    if index_store.has_password(to_url):  # a command line is visible to every user of the host (ps)
        raise UsageError("--to may not carry a password (anyone on this host could read it in the process list)",
                         "give it in ~/.pgpass (or PGPASSFILE) of the server's user, and --to without it")
    refuse_while_serving(layout)
    source_url = index_store.url_of(layout)
    if index_store.engine(to_url) is index_store.engine(source_url):
        raise UsageError("the index is on that engine already", "--to names a postgresql:// database")
    started = time.monotonic()
    source = index_store.open_index(layout, read_only=True)
    try:
        target = index_store.open_url(to_url)
        try:
            if not hasattr(target, "copy_from"):
                raise UsageError(f"cannot copy an index into {target.engine}", "--to names a postgresql:// database")
            copied = target.copy_from(source)
            verdict = verify_chain(target)
            counts = target.row_counts()
        finally:
            target.close()
        expected = source.row_counts()
    finally:
        source.close()
    return {"from": index_store.redacted(source_url), "to": index_store.redacted(to_url), "tables": copied,
            "counts_equal": counts == expected == copied, "audit": verdict.as_dict(),
            "seconds": round(time.monotonic() - started, 2),
            "next": f'set url = "{to_url}" under [index] in {layout.config_file} (its password, if any, in '
                    "the server user's ~/.pgpass), then start the server"}
