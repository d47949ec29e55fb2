"""`open_store(url)`: the engine a store URL names, SQLite (a path) or PostgreSQL (`postgresql://...`).

Apart from the interface (perception/memory/store.py) so the engines, which build on that interface,
are imported by this module and never by it in turn.
"""

from __future__ import annotations

import os
from pathlib import Path

from perception.memory.store import MemoryStore, StoreError, read_password_file, redact


def open_store(
    url: str, dim: int | None, *, password_file: str | None = None, create: bool = True, ef_search: int = 100
) -> MemoryStore:
    """The store at `url`: `postgresql://...` (TLS and other libpq options pass through in the query string;
    the password from `password_file`, else $PGPASSWORD / ~/.pgpass as libpq does), `sqlite:///path`, or a
    path. `create=False` (queries only) refuses a SQLite file that does not exist instead of making one."""
    if url.startswith(("postgresql://", "postgres://")):
        from perception.memory.postgres_store import PostgresStore  # psycopg: only for a server URL

        password = read_password_file(password_file) if password_file else None
        return PostgresStore(url, dim, password=password, ef_search=ef_search)
    path = os.path.expanduser(url.removeprefix("sqlite://") if url.startswith("sqlite://") else url)
    if "://" in path:
        raise StoreError(f"unknown store URL {redact(url)!r}: use postgresql://... or a SQLite file path")
    if not create and not os.path.exists(path):
        raise StoreError(f"no memory store at {path}")
    from perception.memory.sqlite_store import SqliteStore  # sqlite-vec: only for a file

    return SqliteStore(Path(path), dim)
