"""The world node's memory: bus messages -> rows (poses joined by time) -> the writer; queries -> the store.

The world node keeps its in-RAM ring for `now`/`history`/`search`; with `world.store` set it also hands every
checked record here (`add_record`, `add_window`, `add_pose`) and serves `MemoryQueries` on its RPC.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import numpy as np

from bus.rpc import RpcError
from perception.memory.config import MemoryConfig
from perception.memory.open import open_store
from perception.memory.pose import PoseTrack, check_pose
from perception.memory.queries import Embed, MemoryQueries, QueryError
from perception.memory.records import Batch, CaptionRow, Place, SegmentRow, WatchRow, WindowRow, unit
from perception.memory.store import MemoryStore, StoreError, StoreUnavailable, redact
from perception.memory.writer import MemoryWriter
from perception.messages import Embedding, Pose


def batch_of(rec: dict[str, Any], emb: np.ndarray | None, robot: str, pose_at: Callable[[int], Place | None]) -> Batch:
    """The row of one checked world record (perception/nodes/world_store.py), its poses by time."""
    cam, kind = rec["camera"], rec["kind"]
    if kind == "segment":
        row = SegmentRow(
            robot, cam, rec["segment_id"], rec["start_ns"], rec["end_ns"], rec["start_s"], rec["end_s"],
            rec["labels"], None if emb is None else unit(emb), pose_at(rec["start_ns"]), pose_at(rec["end_ns"]),
        )  # fmt: skip
        return Batch(segments=[row])
    if kind == "caption":
        c = CaptionRow(robot, cam, rec["segment_id"], rec["start_ns"], rec["end_ns"], rec["text"], rec["latency_ms"])
        return Batch(captions=[c])
    w = WatchRow(
        robot, cam, rec["segment_id"], rec["start_ns"], rec["end_ns"], rec["watch"], rec["watch_id"],
        rec["active"], float(rec["labels"][0]["score"]), pose_at(rec["end_ns"]),
    )  # fmt: skip
    return Batch(watches=[w])


def robot_name(configured: str | None) -> str:
    return configured or socket.gethostname()


class WorldMemory:
    def __init__(
        self, url: str, dim: int, robot: str | None, cfg: MemoryConfig, max_cameras: int, log: Any, embed: Embed
    ) -> None:
        self.cfg = cfg
        self.dim = dim
        self.robot = robot_name(robot)
        self.log = log
        self.poses = PoseTrack(max_cameras, cfg.pose_max_gap_s)

        def opener() -> MemoryStore:
            return open_store(url, dim, password_file=cfg.password_file, ef_search=cfg.hnsw_ef_search)

        store = None
        try:
            store = opener()  # a wrong D, a bad URL or an unreadable password file fails the node here
        except StoreUnavailable as exc:  # a server that is down: the writer retries
            log.error("memory store unreachable at start; will retry", store=redact(url), error=str(exc)[:300])
        self.writer = MemoryWriter(opener, cfg, self.robot, log, store)
        self.queries = MemoryQueries(lambda: self.writer.store, embed)
        self.rejected = 0
        log.info("memory store", store=redact(url), robot=self.robot, engine=getattr(store, "engine", "?"))

    def rpc_handlers(self) -> dict[str, Any]:
        """The queries as RPC methods (a QueryError becomes the RpcError of the same code)."""

        def wrap(fn):
            async def call(params: dict[str, Any]) -> Any:
                try:
                    return await fn(params)
                except QueryError as exc:
                    raise RpcError(exc.code, exc.message) from None

            return call

        return {name: wrap(fn) for name, fn in self.queries.handlers().items()}

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.close()

    def add_pose(self, msg: Pose) -> None:
        self.poses.add(msg.cam, check_pose(msg))

    def add_window(self, msg: Embedding) -> None:
        if not self.cfg.store_windows:
            return
        emb = np.asarray(msg.embedding, dtype=np.float32)
        if emb.shape != (self.dim,) or not np.isfinite(emb).all():
            raise ValueError(f"window embedding of shape {emb.shape}, expected finite [{self.dim}]")
        self.writer.put(Batch(windows=[WindowRow(self.robot, msg.cam, msg.end_ns, unit(emb))]))

    def add_record(self, rec: dict[str, Any], emb: np.ndarray | None) -> None:
        """A record the world node checked (perception/nodes/world_store.py `check_record`)."""
        self.writer.put(batch_of(rec, emb, self.robot, lambda t: self.poses.at(rec["camera"], t)))

    def stats(self) -> dict[str, float]:
        return {f"memory.{k}": float(v) for k, v in self.writer.counts.items()}


__all__ = ["StoreError", "WorldMemory"]
