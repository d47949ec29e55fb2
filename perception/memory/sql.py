"""The SQL both engines run: schema, idempotent inserts, combined queries, retention. An engine supplies its
connection, its vector column type and how to score a vector against the query (`SqlStore` hooks).

Tables (one row per thing perceived; `robot` on every row, so a fleet shares one database):
    memory_meta  key -> value: the schema version and D (a store of another D is refused, not mixed)
    segments     robot, camera, segment_id, start/end (ns and stream s), labels (JSON), caption,
                 pose at start (frame0, x0, y0, yaw0, t0_ns) and end (frame1, x1, ...), embedding [D]
    captions     robot, camera, segment_id, start/end ns, text, latency_ms
    watches      robot, camera, segment_id, start/end ns, watch, watch_id, active, score, pose
    windows      robot, camera, end_ns, tier, embedding [D]: thinned with age (MemoryConfig.window_tiers)
Rows are unique by what identifies them (robot, camera, segment_id, start_ns, ...), so a batch written twice
(a retry after a connection dropped mid-commit) stores each row once.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from perception.memory.records import Batch, Hit, Place, Query, Span, place_distance
from perception.memory.store import StoreError

SCHEMA_VERSION = "1"

_COLS = "id, robot, camera, segment_id, start_ns, end_ns, start_s, end_s, labels, caption, frame0, x0, y0, yaw0, t0_ns, frame1, x1, y1, yaw1, t1_ns"


def schema(serial: str, vec: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS segments (
            id {serial} PRIMARY KEY, robot TEXT NOT NULL, camera TEXT NOT NULL, segment_id BIGINT NOT NULL,
            start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, start_s DOUBLE PRECISION, end_s DOUBLE PRECISION,
            labels TEXT NOT NULL, caption TEXT,
            frame0 TEXT, x0 DOUBLE PRECISION, y0 DOUBLE PRECISION, yaw0 DOUBLE PRECISION, t0_ns BIGINT,
            frame1 TEXT, x1 DOUBLE PRECISION, y1 DOUBLE PRECISION, yaw1 DOUBLE PRECISION, t1_ns BIGINT,
            embedding {vec}, UNIQUE (robot, camera, segment_id, start_ns))""",
        "CREATE INDEX IF NOT EXISTS segments_end ON segments (end_ns)",
        "CREATE INDEX IF NOT EXISTS segments_robot_camera_end ON segments (robot, camera, end_ns)",
        "CREATE INDEX IF NOT EXISTS segments_place ON segments (x1, y1)",
        f"""CREATE TABLE IF NOT EXISTS captions (
            id {serial} PRIMARY KEY, robot TEXT NOT NULL, camera TEXT NOT NULL, segment_id BIGINT NOT NULL,
            start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, text TEXT NOT NULL, latency_ms DOUBLE PRECISION,
            UNIQUE (robot, camera, segment_id, start_ns))""",
        "CREATE INDEX IF NOT EXISTS captions_end ON captions (end_ns)",
        f"""CREATE TABLE IF NOT EXISTS watches (
            id {serial} PRIMARY KEY, robot TEXT NOT NULL, camera TEXT NOT NULL, segment_id BIGINT NOT NULL,
            start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, watch TEXT NOT NULL, watch_id TEXT,
            active BOOLEAN NOT NULL, score DOUBLE PRECISION NOT NULL,
            frame_id TEXT, x DOUBLE PRECISION, y DOUBLE PRECISION, yaw DOUBLE PRECISION, t_ns BIGINT,
            UNIQUE (robot, camera, watch, end_ns, active))""",
        "CREATE INDEX IF NOT EXISTS watches_end ON watches (end_ns)",
        f"""CREATE TABLE IF NOT EXISTS windows (
            id {serial} PRIMARY KEY, robot TEXT NOT NULL, camera TEXT NOT NULL, end_ns BIGINT NOT NULL,
            tier SMALLINT NOT NULL DEFAULT 0, embedding {vec} NOT NULL, UNIQUE (robot, camera, end_ns))""",
        "CREATE INDEX IF NOT EXISTS windows_end ON windows (end_ns)",
    ]


TABLES = ("segments", "captions", "watches", "windows")


def _place(frame: Any, x: Any, y: Any, yaw: Any, t: Any) -> Place | None:
    return None if frame is None else Place(frame, float(x), float(y), float(yaw), int(t))


def _pose_cols(p: Place | None) -> tuple:
    return (None,) * 5 if p is None else (p.frame_id, p.x, p.y, p.yaw, p.stamp_ns)


class SqlStore:
    """The engine-independent half; subclasses set `engine`, `vec_type`, `serial` and implement the hooks."""

    engine = ""
    serial = ""
    vec_type = ""

    def __init__(self, url: str, dim: int | None) -> None:
        self.url = url
        self.dim = dim or 0
        self._lock = threading.Lock()  # one connection, used by the writer thread and by queries in turn

    # -- hooks ------------------------------------------------------------------------------------------

    def _execute(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _vec(self, emb: np.ndarray) -> Any:
        """The engine's parameter for a vector."""
        raise NotImplementedError

    def _distance(self) -> str:
        """SQL of the cosine distance between `embedding` and one vector parameter."""
        raise NotImplementedError

    def _schema_lock(self) -> None:
        """Serialise schema creation with other writers starting at once (a fleet's world nodes)."""

    def _create_vector_index(self) -> None:
        """The engine's vector index, if it has one (after the tables exist and D is known)."""

    def used_bytes(self) -> int | None:
        raise NotImplementedError

    def _reclaim(self) -> None:
        """Give deleted rows' space back (or make it reusable) after retention deleted some."""

    # -- schema -----------------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        """Create the tables (if new) and check D against what the store holds; StoreError if it differs."""
        self._schema_lock()
        self._execute("CREATE TABLE IF NOT EXISTS memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        meta = dict(self._execute("SELECT key, value FROM memory_meta"))
        stored = int(meta["dim"]) if "dim" in meta else None
        if stored is not None and self.dim and stored != self.dim:
            raise StoreError(
                f"the memory store {self.url} holds embeddings of D={stored}, this model makes D={self.dim}: "
                "use another store (world.store) or the model that wrote it"
            )
        if stored is None and not self.dim:
            raise StoreError(f"the memory store {self.url} is empty: nothing to query yet")
        self.dim = stored or self.dim
        for stmt in schema(self.serial, self.vec_type.format(dim=self.dim)):
            self._execute(stmt)
        if stored is None:
            self._executemany(
                "INSERT INTO memory_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                [("dim", str(self.dim)), ("schema", SCHEMA_VERSION)],
            )
        self._create_vector_index()
        self._commit()

    # -- writes -----------------------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Commit the batch in one transaction (all or nothing); rows already stored are skipped."""
        with self._lock:
            try:
                self._write(batch)
                self._commit()
            except BaseException:
                self._rollback_quietly()
                raise

    def _rollback_quietly(self) -> None:
        try:
            self._rollback()
        except Exception:  # a dead connection: the next call reconnects
            pass

    def _write(self, b: Batch) -> None:
        if b.segments:
            self._executemany(
                "INSERT INTO segments (robot, camera, segment_id, start_ns, end_ns, start_s, end_s, labels, caption, "
                "frame0, x0, y0, yaw0, t0_ns, frame1, x1, y1, yaw1, t1_ns, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "COALESCE(?, (SELECT text FROM captions c WHERE c.robot = ? AND c.camera = ? AND c.segment_id = ? "
                "AND c.start_ns = ?)), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        s.robot, s.camera, s.segment_id, s.start_ns, s.end_ns, s.start_s, s.end_s,
                        json.dumps(s.labels), s.caption, s.robot, s.camera, s.segment_id, s.start_ns,
                        *_pose_cols(s.pose_start), *_pose_cols(s.pose_end),
                        None if s.embedding is None else self._vec(s.embedding),
                    )
                    for s in b.segments
                ],
            )  # fmt: skip
            longest = max(s.end_ns - s.start_ns for s in b.segments)
            self._execute(
                "INSERT INTO memory_meta (key, value) VALUES ('longest_ns', ?) ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN CAST(excluded.value AS BIGINT) > CAST(memory_meta.value AS BIGINT) "
                "THEN excluded.value ELSE memory_meta.value END",
                [str(max(0, longest))],
            )
        if b.captions:
            self._executemany(
                "INSERT INTO captions (robot, camera, segment_id, start_ns, end_ns, text, latency_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(c.robot, c.camera, c.segment_id, c.start_ns, c.end_ns, c.text, c.latency_ms) for c in b.captions],
            )
            self._executemany(
                "UPDATE segments SET caption = ? WHERE robot = ? AND camera = ? AND segment_id = ? AND start_ns = ?",
                [(c.text, c.robot, c.camera, c.segment_id, c.start_ns) for c in b.captions],
            )
        if b.watches:
            self._executemany(
                "INSERT INTO watches (robot, camera, segment_id, start_ns, end_ns, watch, watch_id, active, score, "
                "frame_id, x, y, yaw, t_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (w.robot, w.camera, w.segment_id, w.start_ns, w.end_ns, w.watch, w.watch_id, w.active, w.score,
                     *_pose_cols(w.pose))
                    for w in b.watches
                ],
            )  # fmt: skip
        if b.windows:
            self._executemany(
                "INSERT INTO windows (robot, camera, end_ns, embedding) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(w.robot, w.camera, w.end_ns, self._vec(w.embedding)) for w in b.windows],
            )

    # -- queries ----------------------------------------------------------------------------------------

    def _filters(self, q: Query) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if q.robot is not None:
            where.append("robot = ?")
            args.append(q.robot)
        if q.camera is not None:
            where.append("camera = ?")
            args.append(q.camera)
        if q.since_ns is not None:
            where.append("end_ns >= ?")
            args.append(q.since_ns)
        if q.until_ns is not None:
            where.append("start_ns <= ?")
            args.append(q.until_ns)
            # bounds the end index from above too: no segment is longer than the longest stored
            where.append("end_ns <= ?")
            args.append(q.until_ns + self._longest_ns())
        if q.near is not None:
            n = q.near
            sides = []
            for f, x, y in (("frame0", "x0", "y0"), ("frame1", "x1", "y1")):
                # the bounding box first (an index can serve it), then the circle
                cond = f"{x} BETWEEN ? AND ? AND {y} BETWEEN ? AND ? AND ({x} - ?) * ({x} - ?) + ({y} - ?) * ({y} - ?) <= ?"
                a = [n.x - n.r, n.x + n.r, n.y - n.r, n.y + n.r, n.x, n.x, n.y, n.y, n.r * n.r]
                if n.frame_id is not None:
                    cond = f"{f} = ? AND " + cond
                    a = [n.frame_id, *a]
                sides.append(f"({cond})")
                args += a
            where.append("(" + " OR ".join(sides) + ")")
        return where, args

    def _longest_ns(self) -> int:
        """The longest stored segment (end - start), kept in memory_meta by every write."""
        row = self._execute("SELECT value FROM memory_meta WHERE key = 'longest_ns'")
        return int(row[0][0]) if row else 0

    def search(self, q: Query) -> list[Hit]:
        """Segments matching every filter: by score (with text) or newest first; `min_score` cuts."""
        with self._lock:
            rows = self._search_rows(q)
        hits = [self._hit(r, q) for r in rows]
        if q.embedding is not None and q.order == "score":
            hits.sort(key=lambda h: -(h.score or 0.0))  # an approximate index may return them nearly sorted
        return hits

    def _search_rows(self, q: Query) -> list[tuple]:
        where, args = self._filters(q)
        cols, head = _COLS, []
        if q.embedding is not None:
            v = self._vec(q.embedding)
            cols += f", 1 - {self._distance()} AS score"
            head.append(v)
            where.append("embedding IS NOT NULL")
            if q.min_score is not None:
                where.append(f"{self._distance()} <= ?")
                args += [v, 1.0 - q.min_score]
        sql = f"SELECT {cols} FROM segments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        tail: list[Any] = []
        if q.embedding is not None and q.order == "score":
            sql += f" ORDER BY {self._distance()}"
            tail.append(self._vec(q.embedding))
        else:
            sql += " ORDER BY end_ns DESC"  # the end index serves it (newest first, stops at the limit)
        sql += " LIMIT ?"
        tail.append(q.limit)
        return self._query(sql, [*head, *args, *tail])

    def _query(self, sql: str, params: list) -> list[tuple]:
        try:
            return self._execute(sql, params)
        finally:
            self._rollback_quietly()  # end the read transaction (PostgreSQL would hold a snapshot)

    def _hit(self, r: tuple, q: Query) -> Hit:
        hit = Hit(
            id=int(r[0]), robot=r[1], camera=r[2], segment_id=int(r[3]), start_ns=int(r[4]), end_ns=int(r[5]),
            start_s=float(r[6] or 0.0), end_s=float(r[7] or 0.0), labels=json.loads(r[8]), caption=r[9],
            pose_start=_place(*r[10:15]), pose_end=_place(*r[15:20]),
            score=float(r[20]) if len(r) > 20 and r[20] is not None else None,
        )  # fmt: skip
        if q.near is not None:
            d = [
                x
                for x in (place_distance(hit.pose_start, q.near), place_distance(hit.pose_end, q.near))
                if x is not None
            ]
            hit.distance_m = min(d) if d else None
        return hit

    def no_pose(self, q: Query) -> list[dict[str, str]]:
        """The robots and cameras whose segments under the other filters have no pose (a place query cannot
        see them: the answer says so)."""
        with self._lock:
            where, args = self._filters(Query(since_ns=q.since_ns, until_ns=q.until_ns, robot=q.robot, camera=q.camera))
            where.append("frame1 IS NULL AND frame0 IS NULL")
            sql = "SELECT DISTINCT robot, camera FROM segments WHERE " + " AND ".join(where) + " LIMIT 20"
            return [{"robot": r, "camera": c} for r, c in self._query(sql, args)]

    def get(self, row_id: int) -> Hit | None:
        with self._lock:
            rows = self._query(f"SELECT {_COLS} FROM segments WHERE id = ?", [row_id])
        return self._hit(rows[0], Query()) if rows else None

    def spans(self, q: Query, watch: str | None) -> list[Span]:
        """Active spans of watch phrases (rise -> fall) overlapping the query's time range, newest first."""
        where, args = ["1 = 1"], []
        for col, v in (("robot", q.robot), ("camera", q.camera), ("watch", watch)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        if q.until_ns is not None:
            where.append("end_ns <= ?")
            args.append(q.until_ns)
        sql = (
            "SELECT robot, camera, watch, active, end_ns, frame_id, x, y, yaw, t_ns FROM watches WHERE "
            + " AND ".join(where)
            + " ORDER BY robot, camera, watch, end_ns"
        )
        with self._lock:
            rows = self._query(sql, args)
        spans: list[Span] = []
        open_: dict[tuple, tuple] = {}
        for robot, camera, w, active, end_ns, *pose in rows:
            key = (robot, camera, w)
            if active:
                open_.setdefault(key, (int(end_ns), _place(*pose)))
            elif key in open_:
                start, place = open_.pop(key)
                spans.append(Span(robot, camera, w, start, int(end_ns), (int(end_ns) - start) / 1e9, place))
        spans += [Span(k[0], k[1], k[2], s, None, None, p) for k, (s, p) in open_.items()]
        if q.since_ns is not None:
            spans = [s for s in spans if s.end_ns is None or s.end_ns >= q.since_ns]
        spans.sort(key=lambda s: -s.start_ns)
        return spans[: q.limit]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = {t: int(self._query(f"SELECT count(*) FROM {t}", [])[0][0]) for t in TABLES}
            span = self._query("SELECT min(start_ns), max(end_ns) FROM segments", [])[0]
            robots = self._query("SELECT robot, camera, count(*) FROM segments GROUP BY robot, camera LIMIT 100", [])
            used = self.used_bytes()
            self._rollback_quietly()
        return {
            "engine": self.engine,
            "url": self.url,
            "dim": self.dim,
            "rows": counts,
            "first_ns": span[0],
            "last_ns": span[1],
            "cameras": [{"robot": r, "camera": c, "segments": int(n)} for r, c, n in robots],
            "bytes": used,
        }

    # -- retention --------------------------------------------------------------------------------------

    def retain(self, now_ns: int, cfg: Any, robot: str | None) -> dict[str, int]:
        """Apply `cfg` (MemoryConfig): rows past max_age_s go, windows are thinned per tier and dropped after
        windows_max_age_s, then the oldest rows go while the store is over max_bytes. Returns rows deleted."""
        deleted = dict.fromkeys(TABLES, 0)
        mine, mine_args = (" AND robot = ?", [robot]) if robot is not None else ("", [])
        with self._lock:
            try:
                cut = now_ns - int(cfg.max_age_s * 1e9)
                for t in ("segments", "captions", "watches"):
                    deleted[t] += self._delete(f"DELETE FROM {t} WHERE end_ns < ?{mine}", [cut, *mine_args])
                cut = now_ns - int(cfg.windows_max_age_s * 1e9)
                deleted["windows"] += self._delete(f"DELETE FROM windows WHERE end_ns < ?{mine}", [cut, *mine_args])
                for tier, t in enumerate(cfg.window_tiers, 1):
                    cut = now_ns - int(t.after_s * 1e9)
                    every = max(1, int(t.every_s * 1e9))
                    deleted["windows"] += self._delete(
                        f"DELETE FROM windows WHERE end_ns < ? AND tier < ?{mine} AND id NOT IN (SELECT min(id) FROM "
                        f"windows WHERE end_ns < ? AND tier < ?{mine} GROUP BY robot, camera, end_ns / ?)",
                        [cut, tier, *mine_args, cut, tier, *mine_args, every],
                    )
                    self._execute(
                        f"UPDATE windows SET tier = ? WHERE end_ns < ? AND tier < ?{mine}",
                        [tier, cut, tier, *mine_args],
                    )
                self._commit()
                if any(deleted.values()):
                    self._reclaim()
                if cfg.max_bytes is not None:
                    self._within_budget(cfg.max_bytes, deleted)
            except BaseException:
                self._rollback_quietly()
                raise
        return deleted

    def _delete(self, sql: str, args: list) -> int:
        raise NotImplementedError

    def _within_budget(self, max_bytes: int, deleted: dict[str, int], rounds: int = 20) -> None:
        """Delete the oldest rows (windows first: the bulk, and the segments keep their gist) in steps of the
        share over budget until the store's live bytes fit; bounded rounds per call, the next call goes on."""
        for _ in range(rounds):
            used = self.used_bytes()
            if used is None or used <= max_bytes:
                return
            table = "windows" if self._execute("SELECT 1 FROM windows LIMIT 1") else "segments"
            n = int(self._execute(f"SELECT count(*) FROM {table}")[0][0])
            if n == 0:
                return
            # the share over budget (rows are about equal in size), at least 5%: few rounds, none too deep
            step = max(1, int(n * min(1.0, max(0.05, 1.0 - max_bytes / used + 0.02))))
            cut = self._execute(f"SELECT end_ns FROM {table} ORDER BY end_ns LIMIT 1 OFFSET ?", [step - 1])[0][0]
            if table == "windows":
                deleted["windows"] += self._delete("DELETE FROM windows WHERE end_ns <= ?", [cut])
            else:
                for t in ("segments", "captions", "watches"):
                    deleted[t] += self._delete(f"DELETE FROM {t} WHERE end_ns <= ?", [cut])
            self._commit()
            self._reclaim()
