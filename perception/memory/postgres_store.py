"""The server engine for fleets: PostgreSQL with pgvector, an HNSW index on segment embeddings (cosine).

Many robots' world nodes write one database (every row carries its robot). Filtered text queries use
pgvector's iterative index scan (`hnsw.iterative_scan = relaxed_order`), so a time, place or robot filter
does not starve the top-k; results are re-sorted by score. Connection options (TLS: sslmode, sslrootcert,
...) pass through the URL to libpq; the password comes from a 0600 file, $PGPASSWORD or ~/.pgpass, never
from the config. A connection that fails raises StoreUnavailable and the next call reconnects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.memory.sql import TABLES, SqlStore
from perception.memory.store import StoreError, StoreUnavailable, redact

SCHEMA_LOCK = 0x766A6570  # pg_advisory_xact_lock key: one schema creation at a time across the fleet
EF_SEARCH = 100


class PostgresStore(SqlStore):
    engine = "postgresql"
    serial = "BIGSERIAL"
    vec_type = "vector({dim})"

    def __init__(self, url: str, dim: int | None, password: str | None = None) -> None:
        super().__init__(redact(url), dim)
        self._dsn = url
        self._password = password
        self._conn: Any = None
        self._stattuple = True  # pgstattuple available (the disk budget's measure)
        self._connect()
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> Any:
        import psycopg
        from pgvector.psycopg import register_vector

        if self._conn is not None and not self._conn.closed:
            return self._conn
        kw = {"password": self._password} if self._password else {}
        try:
            conn = psycopg.connect(self._dsn, connect_timeout=5, **kw)
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.commit()
            register_vector(conn)
            conn.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
            conn.commit()
            try:  # pgvector >= 0.8: filtered queries scan on until they have `limit` rows
                conn.execute("SET hnsw.iterative_scan = relaxed_order")
                conn.commit()
            except psycopg.Error:
                conn.rollback()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot reach the memory store {self.url}: {str(exc).strip()[:300]}") from None
        except psycopg.Error as exc:
            raise StoreError(f"memory store {self.url}: {str(exc).strip()[:300]}") from None
        self._conn = conn
        return conn

    def _run(self, fn):
        import psycopg

        conn = self._connect()
        try:
            return fn(conn)
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailable(f"lost the memory store {self.url}: {str(exc).strip()[:300]}") from None
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                self.close()
                raise StoreUnavailable(f"lost the memory store {self.url}: {str(exc).strip()[:300]}") from None
            raise StoreError(f"memory store {self.url}: {str(exc).strip()[:300]}") from None

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _execute(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        def go(conn):
            cur = conn.execute(self._sql(sql), params)
            return cur.fetchall() if cur.description else []

        return self._run(go)

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        self._run(lambda conn: conn.cursor().executemany(self._sql(sql), rows))

    def _delete(self, sql: str, args: list) -> int:
        return self._run(lambda conn: conn.execute(self._sql(sql), args).rowcount)

    def _commit(self) -> None:
        self._run(lambda conn: conn.commit())

    def _rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.rollback()

    def _schema_lock(self) -> None:
        self._execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")

    def _create_vector_index(self) -> None:
        self._execute("CREATE INDEX IF NOT EXISTS segments_hnsw ON segments USING hnsw (embedding vector_cosine_ops)")

    def _vec(self, emb: np.ndarray) -> np.ndarray:
        return np.asarray(emb, dtype=np.float32)

    def _distance(self) -> str:
        return "(embedding <=> ?)"

    def used_bytes(self) -> int | None:
        """Live bytes: each table's total size (with indexes and TOAST) times its live fraction (pgstattuple's
        estimate of what free space and dead rows take). None where pgstattuple cannot be used."""
        if not self._stattuple:
            return None
        try:
            self._execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
            total = 0.0
            for t in TABLES:
                row = self._execute(
                    "SELECT pg_total_relation_size(?::regclass), a.table_len, a.approx_free_space, a.dead_tuple_len "
                    "FROM pgstattuple_approx(?::regclass) a",
                    [t, t],
                )[0]
                size, table_len, free, dead = (float(x or 0) for x in row)
                total += size * (1.0 - (free + dead) / table_len) if table_len else size
            self._commit()
            return int(total)
        except StoreError:
            self._rollback_quietly()
            self._stattuple = False  # not permitted here: the budget is not enforced, stats say bytes: null
            return None

    def _reclaim(self) -> None:
        """VACUUM makes the deleted rows' space reusable (the files keep their size, and stop growing)."""

        def go(conn):
            conn.commit()
            conn.autocommit = True
            try:
                for t in TABLES:
                    conn.execute(f"VACUUM {t}")
            finally:
                conn.autocommit = False

        self._run(go)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
