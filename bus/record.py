"""The recorder: bus topics -> an MCAP file in our layout (bus/mcapfile.py), like `ros2 bag record`.

The asyncio side only receives (raw mode: header checked, body and buffers left as they arrived) and hands
each message to a writer thread, so packing, compression and disk I/O never stall the sockets.

Crash safety: the writer thread closes the current chunk and flushes it to the kernel every
`flush_interval_s` (and whenever a chunk reaches `chunk_size`). A recorder killed with SIGKILL therefore
leaves every message it received more than `flush_interval_s` + the writer's queue delay before the kill
in the file (the queue delay is near zero while the disk keeps up; it is logged as `max_queue_delay_ms`).
`recover()` rewrites such a file into a complete one. Power loss is not covered (no fsync per flush).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bus.config import BusConfig
from bus.logs import get_logger
from bus.mcapfile import BusMcapWriter, SeqTracker, pack_message
from bus.pubsub import RawMessage, Subscriber

_STOP = object()


@dataclass
class RecordStats:
    messages: int = 0
    bytes: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    resets: dict[str, int] = field(default_factory=dict)
    flushes: int = 0
    max_queue_delay_ms: float = 0.0


class _WriterThread(threading.Thread):
    """Owns the MCAP writer: packs, writes, counts seq gaps and flushes on a fixed interval."""

    def __init__(self, writer: BusMcapWriter, flush_interval_s: float, stats: RecordStats) -> None:
        super().__init__(name="bus-recorder-writer", daemon=True)
        self.writer = writer
        self.flush_interval_s = flush_interval_s
        self.stats = stats
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.seqs = SeqTracker()
        self.error: BaseException | None = None

    def run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        dirty = False
        try:
            while True:
                try:
                    item = self.inbox.get(timeout=max(0.0, next_flush - time.monotonic()))
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    self._write(item)
                    dirty = True
                if time.monotonic() >= next_flush:
                    if dirty:
                        self.writer.flush()
                        self.stats.flushes += 1
                        dirty = False
                    next_flush = time.monotonic() + self.flush_interval_s
        except BaseException as exc:  # reported by the recorder; the file so far stays readable
            self.error = exc

    def _write(self, item: tuple[RawMessage, int]) -> None:
        raw, t_queued = item
        h = raw.header
        data = pack_message(raw.parts[1].buffer, [p.buffer for p in raw.parts[2:]])
        self.writer.write(h.topic, h.type, h.v, seq=h.seq, t_pub=h.t, t_log=raw.t_recv_ns, data=data)
        self.seqs.add(h.src, h.topic, h.seq)
        s = self.stats
        s.messages += 1
        s.bytes += len(data)
        s.by_topic[h.topic] = s.by_topic.get(h.topic, 0) + 1
        delay_ms = (time.monotonic_ns() - t_queued) / 1e6
        if delay_ms > s.max_queue_delay_ms:
            s.max_queue_delay_ms = delay_ms


class Recorder:
    """Record `topics` (prefixes; "" = everything) from the bus into `out`, until cancelled or `duration`."""

    def __init__(
        self,
        config: BusConfig,
        out: str | Path,
        *,
        topics: Iterable[str] = ("",),
        session: dict[str, Any] | None = None,
        flush_interval_s: float = 0.5,
        chunk_size: int = 1024 * 1024,
        compression: str = "zstd",
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.config = config
        self.out = Path(out)
        self.topics = list(topics) or [""]
        self.session = dict(session or {})
        self.flush_interval_s = flush_interval_s
        self.chunk_size = chunk_size
        self.compression = compression
        self.stats = RecordStats()
        self.log = get_logger("bus.recorder", out=str(self.out))
        self.ready = asyncio.Event()  # set once subscribed (messages from then on are recorded)

    async def run(self, duration: float | None = None, max_messages: int | None = None) -> RecordStats:
        writer = BusMcapWriter(self.out, chunk_size=self.chunk_size, compression=self.compression)
        session = {
            "topics": self.topics, "flush_interval_s": self.flush_interval_s, "chunk_size": self.chunk_size,
            "compression": self.compression, "started_ns": time.time_ns(), **self.session,
        }
        writer.metadata("session", session)
        writer.flush()
        thread = _WriterThread(writer, self.flush_interval_s, self.stats)
        thread.start()
        # The recorder wants every message, frames included: its own subscriber treats every topic as
        # `reliable` (large queue, no newest-wins conflation). Drops upstream still show as seq gaps.
        keep_all = self.config.model_copy(update={"latest_prefixes": []})
        sub = Subscriber(keep_all, self.topics, raw=True, name="recorder")
        try:
            await sub.start()
            self.ready.set()
            self.log.info("recording", topics=self.topics, flush_interval_s=self.flush_interval_s)
            async with asyncio.timeout(duration):
                received = 0
                async for raw in sub:
                    thread.inbox.put((raw, time.monotonic_ns()))
                    received += 1
                    if max_messages is not None and received >= max_messages:
                        break
                    if thread.error is not None:
                        raise RuntimeError(f"recorder writer failed: {thread.error}") from thread.error
        except TimeoutError:
            pass  # --duration reached
        finally:
            sub.close()
            thread.inbox.put(_STOP)
            await asyncio.to_thread(thread.join)
            self.stats.gaps = dict(thread.seqs.gaps)
            self.stats.resets = dict(thread.seqs.resets)
            try:
                writer.metadata("recording", {
                    "messages": self.stats.messages, "bytes": self.stats.bytes, "by_topic": self.stats.by_topic,
                    "gaps": self.stats.gaps, "resets": self.stats.resets, "ended_ns": time.time_ns(),
                    "subscriber": sub.stats.as_counters(), "max_queue_delay_ms": round(self.stats.max_queue_delay_ms, 3),
                })
            finally:
                writer.close()
            self.log.info(
                "recording closed", messages=self.stats.messages, bytes=self.stats.bytes,
                gaps=sum(self.stats.gaps.values()), max_queue_delay_ms=round(self.stats.max_queue_delay_ms, 3),
            )
        if thread.error is not None:
            raise RuntimeError(f"recorder writer failed: {thread.error}") from thread.error
        return self.stats
