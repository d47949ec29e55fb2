"""The recorder: bus topics -> an MCAP file in our layout (bus/mcapfile.py), like `ros2 bag record`.

The asyncio side only receives (raw mode: header checked, body and buffers left as they arrived) and hands
each message to a writer thread, so packing, compression and disk I/O never stall the sockets.

Memory: the writer's inbox is bounded in bytes (`max_queue_bytes`, default 256 MiB, counting every part of
every message not yet written). When a slow disk lets it fill, new messages are dropped, never queued: they
are counted (`dropped`, `dropped_bytes`, `dropped_by_topic`), logged (rate-limited) and stored in the
closing `recording` metadata, so a stalled disk costs messages, visibly, and never RSS.

Names: a peer can invent any number of topics. The recorder keeps at most `max_topics` channels (one per
topic, or per (topic, type, version) when a topic carries several types; default 1024); messages that
would open a further channel are dropped and counted (`dropped_topic_limit`), with one log line. Seq
trackers are LRU-bounded by `bus.max_streams` (src, topic) pairs.

Crash safety: the writer thread closes the current chunk and flushes it to the kernel every
`flush_interval_s` (and whenever a chunk reaches `chunk_size`). A recorder killed with SIGKILL therefore
loses at most what was queued for the writer (never more than `max_queue_bytes`) plus what it wrote in the
last `flush_interval_s`; while the disk keeps up the queue is near empty (its delay is logged as
`max_queue_delay_ms`). `recover()` rewrites such a file into a complete one. Power loss is not covered (no
fsync per flush). A full disk stops the recording with an error naming it; the chunks flushed before stay
readable (`perception record --recover`).

Splitting (`split_size` bytes and/or `split_duration_s`, like `ros2 bag record --max-bag-size/-duration`):
the writer thread closes the file and opens the next one between two messages, so every message is in
exactly one file and each file is complete (summary, footer) and readable alone. Files are named like
ros2 bag's: `OUT.mcap` -> `OUT_0.mcap`, `OUT_1.mcap`, ... (`split_paths`). Every file starts with the
"session" metadata and ends with a "split" one (its index, counts, the next file's name); the last file
also holds the run's "recording" metadata. A closed file's writer, with the chunk indexes MCAP keeps for
the summary (one per flush, ~0.1 MB a minute), is released: with splitting the recorder's memory stays
flat however long it records.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.mcapfile import BusMcapWriter, SeqTracker, pack_message
from bus.pubsub import RawMessage, Subscriber

_STOP = object()
DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_TOPICS = 1024
MIN_SPLIT_DURATION_S = 1.0


def split_path(out: str | Path, index: int) -> Path:
    """The `index`-th file of a split recording: `OUT.mcap` -> `OUT_<index>.mcap` (ros2 bag's naming)."""
    out = Path(out)
    return out.with_name(f"{out.stem}_{index}{out.suffix or '.mcap'}")


def split_paths(out: str | Path) -> list[Path]:
    """The files of a split recording that exist, in order (`OUT_0.mcap`, `OUT_1.mcap`, ...)."""
    out = Path(out)
    pattern = re.compile(rf"{re.escape(out.stem)}_(\d+){re.escape(out.suffix or '.mcap')}")
    found = [(int(m.group(1)), p) for p in out.parent.glob(f"{out.stem}_*") if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


@dataclass
class SplitPolicy:
    """When the writer starts a new file: at `size` bytes written (checked before each message, so a file
    exceeds it by at most one chunk and its summary) or `duration_s` after the file's first message
    (receive time). None: no limit of that kind; both None: one file, named OUT as given."""

    size: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size <= 0:
            raise ValueError(f"split size must be > 0 bytes, got {self.size}")
        if self.duration_s is not None and self.duration_s < MIN_SPLIT_DURATION_S:
            raise ValueError(f"split duration must be >= {MIN_SPLIT_DURATION_S:g} s, got {self.duration_s:g}")

    @property
    def enabled(self) -> bool:
        return self.size is not None or self.duration_s is not None

    def due(self, written: int, first_ns: int | None, now_ns: int) -> bool:
        if first_ns is None:  # an empty file is never closed for a new one
            return False
        if self.size is not None and written >= self.size:
            return True
        return self.duration_s is not None and now_ns - first_ns >= self.duration_s * 1e9


@dataclass
class RecordStats:
    messages: int = 0  # written to the file
    bytes: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    resets: dict[str, int] = field(default_factory=dict)
    flushes: int = 0
    max_queue_delay_ms: float = 0.0
    received: int = 0  # handed over by the subscriber (recorded + dropped)
    dropped: int = 0  # not recorded: writer queue full, topic limit, or left queued when the writer failed
    dropped_bytes: int = 0
    dropped_by_topic: dict[str, int] = field(default_factory=dict)  # recorded topics only (bounded with them)
    dropped_topic_limit: int = 0  # messages that would have opened a channel beyond max_topics
    max_queued_bytes: int = 0  # high-water mark of the writer's inbox
    files: list[str] = field(default_factory=list)  # every file written, in order (one unless split)


class _Inbox:
    """A FIFO bounded in bytes: `offer` refuses what does not fit. Bytes stay counted until `release`,
    i.e. until the writer has written the message, so the bound covers everything the recorder holds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.peak = 0
        self._items: collections.deque[Any] = collections.deque()
        self._cv = threading.Condition()

    def offer(self, item: Any, nbytes: int) -> bool:
        with self._cv:
            if self.bytes + nbytes > self.max_bytes:
                return False
            self.bytes += nbytes
            self.peak = max(self.peak, self.bytes)
            self._items.append((item, nbytes))
            self._cv.notify()
            return True

    def put_stop(self) -> None:
        with self._cv:
            self._items.append((_STOP, 0))
            self._cv.notify()

    def get(self, timeout: float) -> tuple[Any, int] | None:
        with self._cv:
            if not self._items:
                self._cv.wait(timeout)
            return self._items.popleft() if self._items else None

    def release(self, nbytes: int) -> None:
        with self._cv:
            self.bytes -= nbytes

    def drain(self) -> list[tuple[Any, int]]:
        """What is left (after the writer stopped), emptied."""
        with self._cv:
            items = [x for x in self._items if x[0] is not _STOP]
            self._items.clear()
            self.bytes = 0
            return items


class _WriterThread(threading.Thread):
    """Owns the MCAP writer: packs, writes, counts seq gaps and flushes on a fixed interval."""

    def __init__(
        self,
        writer: BusMcapWriter,
        flush_interval_s: float,
        stats: RecordStats,
        inbox: _Inbox,
        max_streams: int,
        on_error: Any = None,
        split: SplitPolicy | None = None,
        rotate: Callable[[BusMcapWriter], BusMcapWriter] | None = None,
    ) -> None:
        super().__init__(name="bus-recorder-writer", daemon=True)
        self.writer = writer  # the file being written; replaced by `rotate(old)` when `split` says so
        self.split = split or SplitPolicy()
        self.rotate = rotate
        self.first_ns: int | None = None  # receive time of the current file's first message
        self.flush_interval_s = flush_interval_s
        self.stats = stats
        self.inbox = inbox
        self.seqs = SeqTracker(max_streams=max_streams)
        self.error: BaseException | None = None
        self.on_error = on_error  # called (from this thread) once the writer failed

    def run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        dirty = False
        try:
            while True:
                got = self.inbox.get(timeout=max(0.0, next_flush - time.monotonic()))
                if got is not None:
                    item, nbytes = got
                    if item is _STOP:
                        break
                    try:
                        self._write(item)
                    finally:
                        self.inbox.release(nbytes)
                    dirty = True
                if time.monotonic() >= next_flush:
                    if dirty:
                        self.writer.flush()
                        self.stats.flushes += 1
                        dirty = False
                    next_flush = time.monotonic() + self.flush_interval_s
        except BaseException as exc:  # reported by the recorder; the file so far stays readable
            self.error = exc
            if self.on_error is not None:
                self.on_error()

    def _write(self, item: tuple[RawMessage, int]) -> None:
        raw, t_queued = item
        h = raw.header
        if self.rotate is not None and self.split.due(self.writer.size(), self.first_ns, raw.t_recv_ns):
            self.writer = self.rotate(self.writer)  # between two messages: none lost, none written twice
            self.first_ns = None
        if self.first_ns is None:
            self.first_ns = raw.t_recv_ns
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
    """Record `topics` (prefixes; "" = everything) from the bus into `out`, until cancelled or `duration`.

    `out` must not exist unless `overwrite` (a recording is never truncated by accident).
    """

    writer_class: ClassVar[type[_WriterThread]] = _WriterThread

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
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_topics: int = DEFAULT_MAX_TOPICS,
        overwrite: bool = False,
        split_size: int | None = None,
        split_duration_s: float | None = None,
    ) -> None:
        """`split_size` (bytes) / `split_duration_s`: start a new file `OUT_<n>.mcap` at that size or age
        (see the module docstring); both None: everything goes to `out`."""
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if max_queue_bytes < config.max_msg_size:
            raise ValueError(
                f"max_queue_bytes ({max_queue_bytes}) must be >= bus.max_msg_size "
                f"({config.max_msg_size}), or the largest messages could never be recorded"
            )
        if max_topics < 1:
            raise ValueError(f"max_topics must be >= 1, got {max_topics}")
        self.config = config
        self.out = Path(out)
        self.topics = list(topics) or [""]
        self.session = dict(session or {})
        self.flush_interval_s = flush_interval_s
        self.chunk_size = chunk_size
        self.compression = compression
        self.max_queue_bytes = max_queue_bytes
        self.max_topics = max_topics
        self.overwrite = overwrite
        self.split = SplitPolicy(split_size, split_duration_s)
        self.stats = RecordStats()
        self.log = get_logger("bus.recorder", out=str(self.out))
        self.ready = asyncio.Event()  # set once subscribed (messages from then on are recorded)
        self.inbox = _Inbox(max_queue_bytes)
        self._channels: set[tuple[str, str, int]] = set()  # accepted channel keys, at most max_topics
        self._drop_log = RateLimited(1.0)
        self._topic_limit_logged = False

    def _accept(self, raw: RawMessage) -> None:
        """Queue one message for the writer, or drop and count it (topic limit, queue full)."""
        s = self.stats
        s.received += 1
        h = raw.header
        nbytes = sum(len(p) for p in raw.parts)
        key = (h.topic, h.type, h.v)
        if key not in self._channels:
            if len(self._channels) >= self.max_topics:
                s.dropped += 1
                s.dropped_bytes += nbytes
                s.dropped_topic_limit += 1
                if not self._topic_limit_logged:
                    self._topic_limit_logged = True
                    self.log.error(
                        "topic limit reached: messages on further topics are dropped, not recorded",
                        max_topics=self.max_topics,
                        first_refused=h.topic[:80],
                    )
                return
            self._channels.add(key)
        if self.inbox.offer((raw, time.monotonic_ns()), nbytes):
            s.max_queued_bytes = self.inbox.peak
            return
        s.dropped += 1
        s.dropped_bytes += nbytes
        s.dropped_by_topic[h.topic] = s.dropped_by_topic.get(h.topic, 0) + 1
        suppressed = self._drop_log.should_log("queue")
        if suppressed is not None:
            self.log.warning(
                "writer queue full (disk too slow): dropping messages",
                topic=h.topic,
                queued_bytes=self.inbox.bytes,
                max_queue_bytes=self.max_queue_bytes,
                dropped=s.dropped,
                suppressed=suppressed,
            )

    async def _consume(self, sub: Subscriber, max_messages: int | None) -> None:
        received = 0
        async for raw in sub:
            self._accept(raw)
            received += 1
            if max_messages is not None and received >= max_messages:
                return

    def _failure(self, exc: BaseException) -> RuntimeError:
        what = "disk full" if isinstance(exc, OSError) and exc.errno == errno.ENOSPC else "writer failed"
        path = self.stats.files[-1] if self.stats.files else self.out
        return RuntimeError(
            f"recorder {what} writing {path} ({type(exc).__name__}: {exc}); recording stopped after "
            f"{self.stats.messages} messages; what was flushed before stays readable: "
            f"`perception record --recover {path} FIXED.mcap`"
        )

    def _session_values(self) -> dict[str, Any]:
        return {
            "topics": self.topics,
            "flush_interval_s": self.flush_interval_s,
            "chunk_size": self.chunk_size,
            "compression": self.compression,
            "max_queue_bytes": self.max_queue_bytes,
            "max_topics": self.max_topics,
            "split_size": self.split.size,
            "split_duration_s": self.split.duration_s,
            "started_ns": time.time_ns(),
            **self.session,
        }

    def _open_file(self) -> BusMcapWriter:
        """The next file (OUT itself when not splitting), its "session" metadata written and flushed."""
        index = len(self.stats.files)
        path = split_path(self.out, index) if self.split.enabled else self.out
        writer = BusMcapWriter(path, chunk_size=self.chunk_size, compression=self.compression, overwrite=self.overwrite)
        self.stats.files.append(str(path))
        try:
            values = self._session_values()
            if self.split.enabled:
                values["split_index"] = index
            writer.metadata("session", values)
            writer.flush()
        except OSError:
            writer.abandon()
            raise
        return writer

    def _end_split(self, writer: BusMcapWriter, next_name: str | None) -> None:
        index = len(self.stats.files) - 1
        writer.metadata(
            "split", {"index": index, "messages": writer.messages, "bytes": writer.bytes, "next": next_name or ""}
        )

    def _rotate(self, old: BusMcapWriter) -> BusMcapWriter:
        """Close the current file completely and open the next (called by the writer thread between messages)."""
        nxt = split_path(self.out, len(self.stats.files))
        self._end_split(old, nxt.name)
        old.close()  # its writer, chunk indexes included, is released with it
        self.log.info("split", closed=str(old.path), messages=old.messages, size=old.path.stat().st_size, next=str(nxt))
        return self._open_file()

    async def run(self, duration: float | None = None, max_messages: int | None = None) -> RecordStats:
        try:
            writer = self._open_file()
        except OSError as exc:
            if not self.stats.files:  # the file could not be created (exists, read-only): said as it is
                raise
            raise self._failure(exc) from exc
        loop = asyncio.get_running_loop()
        failed = asyncio.Event()

        def on_error() -> None:
            try:
                loop.call_soon_threadsafe(failed.set)
            except RuntimeError:  # loop already closed: run() has returned
                pass

        thread = self.writer_class(
            writer,
            self.flush_interval_s,
            self.stats,
            self.inbox,
            self.config.max_streams,
            on_error,
            split=self.split,
            rotate=self._rotate if self.split.enabled else None,
        )
        del writer  # the thread owns the file from now on: a split must leave nothing holding a closed one
        thread.start()
        # The recorder wants every message, frames included: its own subscriber treats every topic as
        # `reliable` (large queue, no newest-wins conflation). Drops upstream still show as seq gaps.
        keep_all = self.config.model_copy(update={"latest_prefixes": []})
        sub = Subscriber(keep_all, self.topics, raw=True, name="recorder")
        tasks: list[asyncio.Task] = []
        try:
            await sub.start()
            self.ready.set()
            self.log.info(
                "recording",
                topics=self.topics,
                flush_interval_s=self.flush_interval_s,
                max_queue_bytes=self.max_queue_bytes,
            )
            consume = asyncio.create_task(self._consume(sub, max_messages))
            tasks = [consume, asyncio.create_task(failed.wait())]
            done, _ = await asyncio.wait(tasks, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                consume.result()  # the subscriber's error, if any
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sub.close()
            self.inbox.put_stop()
            await asyncio.to_thread(thread.join)
            for (raw, _t), nbytes in self.inbox.drain():  # queued when the writer failed: never written
                self.stats.dropped += 1
                self.stats.dropped_bytes += nbytes
                topic = raw.header.topic
                self.stats.dropped_by_topic[topic] = self.stats.dropped_by_topic.get(topic, 0) + 1
            self.stats.gaps = dict(thread.seqs.gaps)
            self.stats.resets = dict(thread.seqs.resets)
            self.stats.max_queued_bytes = self.inbox.peak
            s = self.stats
            writer = thread.writer  # the last file, when split
            try:
                if thread.error is None:
                    if self.split.enabled:
                        self._end_split(writer, None)
                    writer.metadata(
                        "recording",
                        {
                            "messages": s.messages,
                            "bytes": s.bytes,
                            "by_topic": s.by_topic,
                            "gaps": s.gaps,
                            "resets": s.resets,
                            "ended_ns": time.time_ns(),
                            "subscriber": sub.stats.as_counters(),
                            "max_queue_delay_ms": round(s.max_queue_delay_ms, 3),
                            "received": s.received,
                            "dropped": s.dropped,
                            "dropped_bytes": s.dropped_bytes,
                            "dropped_by_topic": s.dropped_by_topic,
                            "dropped_topic_limit": s.dropped_topic_limit,
                            "max_queued_bytes": s.max_queued_bytes,
                            "max_queue_bytes": self.max_queue_bytes,
                            "files": [Path(f).name for f in s.files],
                        },
                    )
                    writer.close()
                else:
                    writer.abandon()
            except OSError as exc:  # the disk filled up while closing: keep what is there
                thread.error = thread.error or exc
                writer.abandon()
            log = self.log.error if thread.error is not None else self.log.info
            log(
                "recording closed",
                messages=s.messages,
                bytes=s.bytes,
                files=len(s.files),
                gaps=sum(s.gaps.values()),
                dropped=s.dropped,
                dropped_bytes=s.dropped_bytes,
                dropped_topic_limit=s.dropped_topic_limit,
                max_queued_bytes=s.max_queued_bytes,
                max_queue_delay_ms=round(s.max_queue_delay_ms, 3),
                error=None if thread.error is None else f"{type(thread.error).__name__}: {thread.error}",
            )
        if thread.error is not None:
            raise self._failure(thread.error) from thread.error
        return self.stats
