"""The embedded engine: one SQLite file (WAL) with the sqlite-vec extension scoring vectors.

Why SQLite + sqlite-vec over LanceDB (measured, docs/memory.md): a transaction is the unit of
acknowledgement (WAL, synchronous=NORMAL: a committed batch survives a SIGKILL of the process), the schema
and every query are the same SQL as the PostgreSQL engine's, and it adds ~1 MB (the extension) plus a SQLite
built with extension loading (pysqlite3-binary; the interpreter's own may be built without). LanceDB inserted
and scanned faster at 100k x 256 but brings ~450 MB (pyarrow, lance) and a second query language.

sqlite-vec scores exactly (a scan of the rows the other filters leave), so a combined query with a time or
place filter reads only those rows; an unfiltered text query over many rows is the slow case (docs/memory.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from perception.memory.sql import SqlStore
from perception.memory.store import StoreError

try:
    from pysqlite3 import dbapi2 as sqlite3  # built with extension loading
except ImportError:  # pragma: no cover - an interpreter whose own sqlite3 loads extensions
    import sqlite3  # type: ignore[no-redef]


def _connect(path: Path) -> Any:
    import sqlite_vec

    db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
    try:
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        db.enable_load_extension(False)
    except AttributeError as exc:
        raise StoreError("this Python's sqlite3 cannot load extensions: pip install pysqlite3-binary") from exc
    return db


class SqliteStore(SqlStore):
    engine = "sqlite"
    serial = "INTEGER"  # an INTEGER PRIMARY KEY is the rowid
    vec_type = "BLOB"  # float32 little-endian, what sqlite-vec reads

    def __init__(self, path: Path, dim: int | None) -> None:
        super().__init__(str(path), dim)
        self.path = path
        new = not path.exists()
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # private from its first byte
        try:
            self.db = _connect(path)
            if new:
                self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # deleted pages go back to the disk
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives a process crash
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the memory store {path}: {exc}") from None

    def _execute(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise _error(self.path, exc) from None

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        try:
            self.db.executemany(sql, rows)
        except sqlite3.OperationalError as exc:
            raise _error(self.path, exc) from None

    def _delete(self, sql: str, args: list) -> int:
        return self.db.execute(sql, args).rowcount

    def _commit(self) -> None:
        try:
            self.db.commit()
        except sqlite3.OperationalError as exc:
            raise _error(self.path, exc) from None

    def _rollback(self) -> None:
        self.db.rollback()

    def _vec(self, emb: np.ndarray) -> bytes:
        return np.ascontiguousarray(emb, dtype="<f4").tobytes()

    def _distance(self) -> str:
        return "vec_distance_cosine(embedding, ?)"

    def used_bytes(self) -> int:
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _reclaim(self) -> None:
        self.db.execute("PRAGMA incremental_vacuum")
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def _error(path: Path, exc: Exception) -> StoreError:
    msg = str(exc)
    if "disk is full" in msg or "disk I/O" in msg:
        return StoreError(f"the memory store {path} cannot be written: {msg} (free space or lower memory.max_bytes)")
    return StoreError(f"memory store {path}: {msg}")
