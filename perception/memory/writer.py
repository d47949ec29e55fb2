"""The world node's writer: rows batched off the event loop into the store, retried while the database is
down, with a bounded buffer; retention runs in the same thread.

A row is *acknowledged* once its transaction committed (`memory.committed` on stats/world counts them; a
query through the world node sees them): from then on it survives a SIGKILL of the node (SQLite WAL,
PostgreSQL's commit) and of the database process. Until then it waits in RAM, at most `buffer_max` rows;
past that the oldest windows, then the oldest rows, are dropped and counted (`memory.dropped`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from perception.memory.config import MemoryConfig
from perception.memory.records import Batch
from perception.memory.store import MemoryStore, StoreError

CLOSE_FLUSH_S = 5.0  # at shutdown, what is pending gets this long to commit


def chunks(batch: Batch, n: int) -> list[Batch]:
    """`batch` split into transactions of at most n rows (segments before their captions, as they came)."""
    out, cur = [], Batch()
    for kind in ("segments", "captions", "watches", "windows"):
        for row in getattr(batch, kind):
            getattr(cur, kind).append(row)
            if len(cur) >= n:
                out.append(cur)
                cur = Batch()
    if len(cur):
        out.append(cur)
    return out


class MemoryWriter:
    def __init__(
        self,
        open_store: Callable[[], MemoryStore],
        cfg: MemoryConfig,
        robot: str,
        log: Any,
        store: MemoryStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.robot = robot
        self.log = log
        self.store = store  # None until the database was reached
        self._open = open_store
        self._pending = Batch()
        self._cv = threading.Condition()
        self._stop = False
        self._close_by = 0.0
        self.counts = {"committed": 0, "dropped": 0, "errors": 0, "retained": 0, "down": 0, "pending": 0}
        self.last_error = ""
        self._next_retain = time.monotonic() + min(5.0, cfg.retain_every_s)
        self._thread = threading.Thread(target=self._run, name="memory-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, batch: Batch) -> None:
        with self._cv:
            self._pending.extend(batch)
            over = len(self._pending) - self.cfg.buffer_max
            if over > 0:
                self._drop(over)
            self.counts["pending"] = len(self._pending)
            if len(self._pending) >= self.cfg.batch_max:
                self._cv.notify()

    def _drop(self, n: int) -> None:
        """Drop n rows: windows first (the segments keep their gist), then the oldest of each kind."""
        p = self._pending
        for kind in ("windows", "watches", "captions", "segments"):
            rows = getattr(p, kind)
            k = min(n, len(rows))
            del rows[:k]
            n -= k
            self.counts["dropped"] += k
            if n == 0:
                return

    def _take(self) -> Batch:
        with self._cv:
            if not self._stop and len(self._pending) < self.cfg.batch_max:
                self._cv.wait(self.cfg.flush_s)
            batch, self._pending = self._pending, Batch()
            return batch

    def _requeue(self, batch: Batch) -> None:
        with self._cv:
            batch.extend(self._pending)
            self._pending = batch
            over = len(self._pending) - self.cfg.buffer_max
            if over > 0:
                self._drop(over)
            self.counts["pending"] = len(self._pending)

    def _failed(self, what: str, exc: Exception) -> None:
        self.counts["errors"] += 1
        first = not self.counts["down"]
        self.counts["down"] = 1
        self.last_error = str(exc)[:300]
        if first:
            self.log.error("memory store unavailable; buffering and retrying", what=what, error=self.last_error)

    def _ensure_store(self) -> MemoryStore | None:
        if self.store is None:
            try:
                self.store = self._open()
            except StoreError as exc:
                self._failed("open", exc)
                return None
        return self.store

    def flush_once(self) -> bool:
        """Commit what is pending; False if the store failed (the rows wait for the next try)."""
        batch = self._take()
        if not len(batch):
            return True
        if self._ensure_store() is None:
            self._requeue(batch)
            return False
        parts = chunks(batch, self.cfg.batch_max)
        for k, part in enumerate(parts):
            try:
                self.store.write(part)
            except StoreError as exc:
                rest = Batch()
                for p in parts[k:]:
                    rest.extend(p)
                self._requeue(rest)
                self._failed("write", exc)
                return False
            with self._cv:
                self.counts["committed"] += len(part)
                self.counts["pending"] = len(self._pending)
        if self.counts["down"]:
            self.counts["down"] = 0
            self.log.info("memory store reachable again", pending=self.counts["pending"])
        return True

    def _retain(self) -> None:
        if self.store is None or time.monotonic() < self._next_retain:
            return
        self._next_retain = time.monotonic() + self.cfg.retain_every_s
        try:
            deleted = self.store.retain(time.time_ns(), self.cfg, self.robot)
        except StoreError as exc:
            self._failed("retain", exc)
            return
        self.counts["retained"] += sum(deleted.values())
        if any(deleted.values()):
            self.log.info("memory retention", deleted=deleted)

    def _run(self) -> None:
        while True:
            ok = self.flush_once()
            with self._cv:
                if self._stop and (not len(self._pending) or time.monotonic() > self._close_by):
                    return
            if ok:
                self._retain()
            else:
                with self._cv:
                    self._cv.wait(self.cfg.retry_s if not self._stop else 0.2)

    def close(self) -> None:
        """Commit what is pending (for at most CLOSE_FLUSH_S), then close the store."""
        with self._cv:
            self._stop = True
            self._close_by = time.monotonic() + CLOSE_FLUSH_S
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(CLOSE_FLUSH_S + 5)
        if self.store is not None and not self._thread.is_alive():
            self.store.close()
