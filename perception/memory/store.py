"""The memory store: one interface, two engines (SQLite + sqlite-vec embedded, PostgreSQL + pgvector server).

    store = open_store("sqlite:///var/lib/vljepa/memory.db", dim=256)     # or a bare path
    store = open_store("postgresql://robot@db.local/memory?sslmode=verify-full", dim=256)
    store.write(Batch(segments=[...]))                  # one transaction; idempotent per row
    store.search(Query(embedding=q, since_ns=..., near=Near(1.0, 2.0, 3.0), robot="r1"))

Every engine runs the same SQL (perception/memory/sql.py) apart from the vector column and its distance,
so a query means the same on a laptop and on a fleet's server; tests run both against real engines.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from perception.memory.records import Batch, Hit, Query, Span


class StoreError(RuntimeError):
    """A store that cannot be opened or used as configured (bad URL, wrong dimension, no extension): one line."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (down, restarting): the writer keeps the rows and retries."""


class MemoryStore(Protocol):
    url: str  # without a password
    dim: int

    def write(self, batch: Batch) -> None: ...
    def search(self, q: Query) -> list[Hit]: ...
    def no_pose(self, q: Query) -> list[dict[str, str]]: ...
    def get(self, row_id: int) -> Hit | None: ...
    def spans(self, q: Query, watch: str | None) -> list[Span]: ...
    def stats(self) -> dict[str, Any]: ...
    def retain(self, now_ns: int, cfg: Any, robot: str | None) -> dict[str, int]: ...
    def used_bytes(self) -> int | None: ...
    def close(self) -> None: ...


def redact(url: str) -> str:
    """`url` without its password (what logs and stats show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def read_password_file(path: str) -> str:
    """The password in `path`, which must be private (0600 or narrower): a readable secret is refused."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise StoreError(f"cannot read the password file {p}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"the password file {p} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
        )
    return p.read_text().strip()
