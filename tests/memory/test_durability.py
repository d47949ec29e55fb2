"""What the world acknowledged survives: a SIGKILLed world node process (SQLite store) and a SIGKILLed
PostgreSQL mid-ingest; a database that is down is retried with a bounded, counted buffer."""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np

from bus.logs import get_logger
from perception.memory.config import MemoryConfig
from perception.memory.open import open_store
from perception.memory.pgserver import PgServer
from perception.memory.records import Batch, Query, SegmentRow, unit
from perception.memory.writer import MemoryWriter
from tests.nodes.harness import bus_up
from tests.support import child_env

from .test_world_memory import seg_event, world_config

S = 10**9
DIM = 32  # tests.support.SMALL_MODEL's embed_dim


async def test_acknowledged_rows_survive_sigkill_of_the_world_node(tmp_path, runtime_dir, small_checkpoint):
    db = tmp_path / "memory.db"
    config = world_config(runtime_dir, small_checkpoint, str(db), "r1")
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(config.model_dump_json())
    rng = np.random.default_rng(0)
    t0 = time.time_ns()
    async with bus_up(config, ["stats/world"]) as (pub, sub):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "perception.nodes", "world", "--config-json", str(cfg_file), env=child_env()
        )
        try:
            async with asyncio.timeout(300):  # a loaded 2-core machine starts a node slowly
                while (await sub.recv()).msg.counters.get("ready") != 1.0:
                    pass
                acked, k = 0.0, 0
                while acked < 100:  # events keep flowing while the node acknowledges them
                    for _ in range(25):
                        pub.publish_nowait("events/front", seg_event("front", k, t0, unit(rng.normal(size=DIM))))
                        k += 1
                    acked = (await sub.recv()).msg.counters.get("memory.committed", 0.0)
                proc.kill()  # SIGKILL, mid-ingest
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    store = open_store(str(db), None, create=False)
    rows = store.stats()["rows"]["segments"]
    store.close()
    assert rows >= acked >= 100


def row(k: int) -> SegmentRow:
    e = np.zeros(8, np.float32)
    e[k % 8] = 1
    return SegmentRow("r1", "front", k, k * S, k * S + S, float(k), k + 1.0, [], unit(e))


def wait(cond, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_writer_rides_out_a_postgres_sigkill_and_bounds_its_buffer():
    server = PgServer(fsync=False)  # a process kill loses nothing the kernel holds
    server.init()
    server.start()
    cfg = MemoryConfig(flush_s=0.05, retry_s=0.2, buffer_max=150, batch_max=50)

    def opener():
        return open_store(server.url, 8)

    writer = MemoryWriter(opener, cfg, "r1", get_logger("test.memory"), opener())
    writer.start()
    try:
        writer.put(Batch(segments=[row(k) for k in range(100)]))
        wait(lambda: writer.counts["committed"] == 100)
        server.kill()
        writer.put(Batch(segments=[row(k) for k in range(100, 200)]))
        wait(lambda: writer.counts["down"] == 1)
        assert writer.counts["pending"] == 100 and writer.counts["committed"] == 100
        writer.put(Batch(segments=[row(k) for k in range(200, 300)]))  # over buffer_max: the oldest go, counted
        wait(lambda: writer.counts["dropped"] == 50)
        server.start()  # crash recovery from the WAL
        wait(lambda: writer.counts["committed"] == 250 and writer.counts["down"] == 0)
    finally:
        writer.close()
    try:
        store = opener()
        ids = sorted(h.segment_id for h in store.search(Query(limit=100)))
        stats = store.stats()
        store.close()
    finally:
        server.close()
    # every acknowledged row, once; what the full buffer dropped were the oldest unacknowledged ones
    assert stats["rows"]["segments"] == 250
    assert ids == list(range(200, 300))


def test_a_full_embedded_store_is_a_clear_error_and_nothing_acknowledged_is_lost(tmp_path):
    """SQLite's own 'database or disk is full' (SQLITE_FULL, here from a page limit: the same error a full
    filesystem gives): the writer says so in one line, keeps the rows, and commits them once there is room."""
    path = tmp_path / "memory.db"
    cfg = MemoryConfig(flush_s=0.05, retry_s=0.1, batch_max=50)
    store = open_store(str(path), 8)
    writer = MemoryWriter(lambda: open_store(str(path), 8), cfg, "r1", get_logger("test.memory"), store)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # room for a handful of rows only
    writer.start()
    try:
        writer.put(Batch(segments=[row(k) for k in range(300)]))
        wait(lambda: writer.counts["down"] == 1)
        assert "database or disk is full" in writer.last_error and "max_bytes" in writer.last_error
        assert "\n" not in writer.last_error
        acked = writer.counts["committed"]
        assert acked < 300 and writer.counts["pending"] == 300 - acked
        with store._lock:
            store.db.execute("PRAGMA max_page_count = 1073741823")  # space again
        wait(lambda: writer.counts["committed"] == 300 and writer.counts["down"] == 0)
    finally:
        writer.close()
    reader = open_store(str(path), None, create=False)
    assert reader.stats()["rows"]["segments"] == 300
    reader.close()
