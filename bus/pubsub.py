"""Typed publish/subscribe through the proxy, on zmq.asyncio.

Delivery policies, chosen by topic prefix (`bus.latest_prefixes`, like ROS 2 QoS):
- `latest` (frames/): small HWMs; the subscriber keeps only the newest undelivered message per topic,
  so a slow consumer always gets the freshest frame; replaced messages are counted as `superseded`.
- `reliable` (everything else): large HWMs; every message is queued; gaps in `seq` per (src, topic)
  are counted as `gaps` and logged.
Each policy has its own socket on both sides so that a frame flood cannot push events out of a queue.

Slow joiner, handled without sleeps (see docs/bus.md):
- The proxy's XSUB subscribes to everything, so a connected publisher forwards every message to the
  proxy and the proxy alone filters. `await Publisher.ready()` returns once the proxy's catch-all
  subscription has reached the publisher's XPUB socket: from then on nothing it publishes is lost.
- `await Subscriber.start()` subscribes, then subscribes to a unique probe topic `_bus/ready/<nonce>`.
  The proxy answers the probe only after its XPUB has applied the subscriber's earlier subscriptions
  (they travel on the same pipe, in order), so once `start()` returns, every message that reaches the
  proxy afterwards is delivered. The probe is retried with a fresh nonce until `ready_timeout_s`.

Publishing never blocks: PUB/XPUB sockets drop at their HWM instead of waiting. A publisher keeps
reading its XPUB (whatever arrives there is discarded and counted): an unread XPUB queues without bound.

Hostile input: a subscriber survives any message (every decode failure is a counted reject, and the drain
loop survives any exception); its per-stream state is bounded (`bus.max_streams` LRU) and its queue is
bounded in messages (`reliable_hwm`) and in bytes (`max_pending_bytes`), beyond which it stops reading
and lets ZeroMQ queue and drop.
Receiving costs one loop callback per batch: the SUB sockets' ZMQ_FD is watched with `loop.add_reader`
and drained with NOBLOCK reads (no reader task, no per-message future).

Same-host frames (`bus.shm`, bus/shm.py): on ipc:// buses a publisher may send large arrays of `latest`
topics by reference to shared memory; a subscriber maps such a frame when it delivers it (raw mode: copies
the bytes in), so what it queues holds no memory of the publisher's.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket as _socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import zmq
import zmq.asyncio

from bus import shm
from bus.bounded import BoundedDict
from bus.codec import DecodeError, Envelope, Header, decode, encode, peek
from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.message import BusReady, Message
from bus.security import apply_client, apply_limits

Policy = Literal["latest", "reliable"]
READY_PREFIX = "_bus/ready/"
MAX_GAP = 1 << 20  # a seq jump wider than this is a reset (or a forged seq), not a million lost messages
INTERNAL_PREFIX = b"_bus/"
# plain ints: pyzmq's flag enums cost an enum operation per part in send_multipart / recv_multipart
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)


class BusNotReady(TimeoutError):
    """The proxy did not answer the readiness handshake in time (is `perception bus` running?)."""


class SubscriptionDenied(PermissionError):
    """The proxy refused some of this subscriber's prefixes: its CURVE key's role does not allow them."""


def default_src() -> str:
    return f"{_socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _socket_pair(ctx: zmq.asyncio.Context, kind: int) -> tuple[zmq.asyncio.Socket, zmq.Socket]:
    """An asyncio socket (for awaiting) and a sync shadow of it (for non-blocking fast paths)."""
    asock = ctx.socket(kind)
    return asock, zmq.Socket.shadow(asock.underlying)


class Publisher:
    """Publishes typed messages to `bus.pub`; one `seq` counter per topic, starting at 0."""

    def __init__(
        self,
        config: BusConfig,
        *,
        src: str | None = None,
        ctx: zmq.asyncio.Context | None = None,
        endpoint: str | None = None,
        linger_ms: int = 500,
    ) -> None:
        self.config = config
        self.src = src or default_src()
        self.endpoint = endpoint or config.endpoint("pub")
        self._ctx = ctx or zmq.asyncio.Context.instance()
        # per topic; topics may carry names from messages (embeddings/<cam>): bounded, an evicted topic
        # restarts at 0, which subscribers count as a publisher reset
        self._seq: BoundedDict[str, int] = BoundedDict(4096)
        self._sockets: dict[Policy, tuple[zmq.asyncio.Socket, zmq.Socket]] = {}
        self._socket_for: BoundedDict[str, zmq.Socket] = BoundedDict(1024)  # topic -> its policy's socket
        self.published = 0
        self.upstream_dropped = 0  # frames that arrived on our XPUB other than subscriptions
        self._watched: list[zmq.Socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.log = get_logger("bus.publisher", src=self.src)
        # frames by reference through shared memory (bus/shm.py): ipc:// buses only, so nobody off-host waits
        self._shm = shm.ShmPublisher(config) if config.shm.enabled and shm.local_bus(config, self.endpoint) else None
        if config.shm.enabled and self._shm is None:
            self.log.info(
                "shared-memory frames off: the bus is not ipc://", pub=self.endpoint, sub=config.endpoint("sub")
            )
        for policy, hwm in (("latest", config.latest_hwm), ("reliable", config.reliable_hwm)):
            asock, sync = _socket_pair(self._ctx, zmq.XPUB)
            sync.setsockopt(zmq.SNDHWM, hwm)
            sync.setsockopt(zmq.LINGER, linger_ms)
            apply_limits(sync, config)
            apply_client(sync, self.endpoint, config.curve)
            sync.connect(self.endpoint)
            self._sockets[policy] = (asock, sync)

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until the proxy's catch-all subscription has arrived on every socket of this publisher."""
        timeout = self.config.ready_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                for asock, _ in self._sockets.values():
                    while True:
                        frame = await asock.recv()
                        if frame == b"\x01":  # subscribe to "" (the proxy's catch-all)
                            break
                        self.upstream_dropped += 1
        except TimeoutError as exc:
            raise BusNotReady(f"no proxy answered on {self.endpoint} within {timeout}s") from exc
        self._loop = asyncio.get_running_loop()
        for _, sync in self._sockets.values():
            self._loop.add_reader(sync.FD, self._drain_upstream, sync)
            self._watched.append(sync)
            self._drain_upstream(sync)

    def _drain_upstream(self, sync: zmq.Socket) -> None:
        """Read and discard what arrived on an XPUB (nothing but subscriptions should): never let it queue."""
        try:
            for _ in range(1000):
                sync.recv(zmq.NOBLOCK, copy=False)
                self.upstream_dropped += 1
        except zmq.ZMQError:  # zmq.Again (drained), or the socket is closing
            return
        if self._loop is not None:
            self._loop.call_soon(self._drain_upstream, sync)  # more may wait; the FD will not signal again

    def publish_nowait(self, topic: str, msg: Message) -> int:
        """Encode and send without waiting; returns the message's seq. Raises EncodeError on bad input."""
        seq = self._seq.get(topic, 0)
        place = self._shm.placer(topic) if self._shm is not None else None
        try:
            parts = encode(topic, msg, seq=seq, src=self.src, t_ns=time.time_ns(), place=place)
        except BaseException:
            if place is not None:
                self._shm.commit(None)  # a slot placed for a message that is never sent
            raise
        if place is not None:
            self._shm.commit(parts)  # the slot becomes readable (with the message beside it) before the send
        self._seq[topic] = seq + 1
        sock = self._socket_for.get(topic)
        if sock is None:
            sock = self._socket_for[topic] = self._sockets[self.config.policy(topic)][1]
        send = sock.send  # = send_multipart(parts, copy=False) without its per-part type checks and enum ops
        for i in range(len(parts) - 1):
            send(parts[i], _SNDMORE, copy=False)
        send(parts[-1], 0, copy=False)
        self.published += 1
        if self._watched and not self.published & 1023:  # a send may consume the FD's edge: check now and then
            for sync in self._watched:
                self._drain_upstream(sync)
        return seq

    async def publish(self, topic: str, msg: Message) -> int:
        """Same as publish_nowait (sending never blocks); async for symmetry with the rest of a node."""
        return self.publish_nowait(topic, msg)

    def loan(self, topic: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray | None:
        """A writable array in shared memory for the next message on `topic`: fill it, put it in the
        message and publish; it is then sent by reference without a copy (and becomes read-only: do not
        write it again). None where shared memory does not apply (off, not ipc://, not a `latest` topic,
        outside `bus.shm.min_bytes`..`max_frame_bytes`, every slot pinned): allocate an array as usual."""
        if self._shm is None:
            return None
        return self._shm.loan(topic, tuple(shape), np.dtype(dtype))

    @property
    def shm_stats(self) -> dict[str, int]:
        """Shared-memory counters: `sent` by reference, `full` (every slot pinned: sent inline), `oversize`
        (over max_frame_bytes: inline), `rings` created."""
        return dict(self._shm.stats) if self._shm is not None else {}

    def publish_raw(self, parts: list[Any]) -> None:
        """Send already-encoded parts verbatim (replay of a recording)."""
        topic = bytes(parts[0]).decode("utf-8", "replace")
        self._sockets[self.config.policy(topic)][1].send_multipart(parts, copy=False)
        self.published += 1

    def close(self, linger_ms: int | None = None) -> None:
        for sync in self._watched:
            try:
                self._loop.remove_reader(sync.FD)
            except (RuntimeError, ValueError, zmq.ZMQError):  # loop or socket already closed
                pass
        self._watched.clear()
        for asock, _ in self._sockets.values():
            asock.close(linger=linger_ms)
        self._sockets.clear()
        self._socket_for.clear()
        if self._shm is not None:
            self._shm.close()

    async def __aenter__(self) -> Publisher:
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class RawMessage:
    """An undecoded bus message (raw mode): checked header, original parts, local receive time."""

    header: Header
    parts: list[zmq.Frame]
    t_recv_ns: int

    @property
    def topic(self) -> str:
        return self.header.topic

    def part_bytes(self) -> list[bytes]:
        return [p.bytes for p in self.parts]


@dataclass(slots=True)
class _Deferred:
    """A shared-memory frame queued undecoded: it is mapped (and pinned) only when delivered."""

    parts: list[Any]


@dataclass
class SubscriberStats:
    received: int = 0  # multiparts read from the sockets (probes excluded)
    delivered: int = 0  # handed to the consumer
    bad: collections.Counter = field(default_factory=collections.Counter)  # by DecodeError reason
    gaps: int = 0  # messages missing from a (src, topic) seq stream
    resets: int = 0  # a (src, topic) seq went backwards: publisher restarted
    superseded: int = 0  # `latest` messages replaced by a newer one before delivery
    shm_stale: int = 0  # shared-memory frames overwritten before their reference was read (dropped)

    def as_counters(self) -> dict[str, float]:
        out = {
            "received": self.received,
            "delivered": self.delivered,
            "bad": sum(self.bad.values()),
            "gaps": self.gaps,
            "resets": self.resets,
            "superseded": self.superseded,
            "shm_stale": self.shm_stale,
        }
        out.update({f"bad.{k}": v for k, v in self.bad.items()})
        return {k: float(v) for k, v in out.items()}


class Subscriber:
    """Subscribes to topic prefixes on `bus.sub`; `async for env in sub` or `await sub.recv()`.

    In raw mode, yields `RawMessage` (header checked, body left encoded) for recorders.
    """

    def __init__(
        self,
        config: BusConfig,
        topics: Iterable[str] = ("",),
        *,
        raw: bool = False,
        ctx: zmq.asyncio.Context | None = None,
        endpoint: str | None = None,
        name: str = "subscriber",
        policy: Policy | None = None,
    ) -> None:
        """`policy` forces one delivery policy for every topic (introspection counts every message)."""
        self.config = config
        self._limits = config.limits()
        self._forced_policy = policy
        self._policy_of: dict[str, Policy] = {}  # topic -> config.policy(topic), cached
        self.topics = list(topics)
        for prefix in self.topics:
            if len(prefix.encode()) > config.max_topic_bytes:
                raise ValueError(f"topic prefix of {len(prefix.encode())} bytes > bus.max_topic_bytes")
        self.raw = raw
        self.endpoint = endpoint or config.endpoint("sub")
        # shared-memory references are honoured on ipc:// only: whatever this process's bus.shm says
        self._resolve = shm.Resolver() if self.endpoint.startswith("ipc://") else None
        self.stats = SubscriberStats()
        self.log = get_logger("bus.subscriber", node=name)
        self._ctx = ctx or zmq.asyncio.Context.instance()
        self._sockets: list[tuple[zmq.asyncio.Socket, zmq.Socket]] = []
        self._watched: set[zmq.Socket] = set()  # sockets whose FD the loop watches
        self._paused: list[zmq.Socket] = []  # unwatched by back-pressure, rewatched by recv_nowait
        self._batch = 1000  # multiparts read per wake-up before yielding to the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future | None = None  # the consumer blocked in recv(), if any
        self._order: collections.deque[Any] = collections.deque()  # items, or a topic str for `latest`
        self._latest: dict[str, Any] = {}  # bounded by _order's bound (one entry per queued topic)
        self._last_seq: BoundedDict[tuple[str, str], int] = BoundedDict(config.max_streams)
        self._probes: dict[bytes, asyncio.Future] = {}
        self._rate_limited = RateLimited(1.0)
        self._max_pending = config.reliable_hwm
        self._max_pending_bytes = config.max_pending_bytes
        self._pending_bytes = 0  # wire bytes of the items in _order / _latest
        self._closed = False
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, timeout: float | None = None) -> Subscriber:
        """Connect, subscribe and complete the readiness handshake with the proxy."""
        if self._started:
            return self
        self._started = True
        self._loop = asyncio.get_running_loop()
        by_policy: dict[Policy, list[str]] = {"latest": [], "reliable": []}
        for prefix in self.topics:
            # "" and prefixes shorter than a latest prefix may carry any policy: use the reliable socket
            by_policy[self.config.policy(prefix) if prefix else "reliable"].append(prefix)
        for policy, prefixes in by_policy.items():
            if not prefixes:
                continue
            asock, sync = _socket_pair(self._ctx, zmq.SUB)
            sync.setsockopt(zmq.RCVHWM, self.config.latest_hwm if policy == "latest" else self.config.reliable_hwm)
            sync.setsockopt(zmq.LINGER, 0)
            apply_limits(sync, self.config)
            apply_client(sync, self.endpoint, self.config.curve)
            sync.connect(self.endpoint)
            for prefix in prefixes:
                sync.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            self._sockets.append((asock, sync))
            self._watch(sync)
        timeout = self.config.ready_timeout_s if timeout is None else timeout
        try:
            await asyncio.gather(*(self._handshake(sync, timeout) for _, sync in self._sockets))
        except BaseException:
            self.close()
            raise
        return self

    async def _handshake(self, sync: zmq.Socket, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wait = 0.05
        while True:
            probe = f"{READY_PREFIX}{uuid.uuid4().hex}".encode()
            fut = loop.create_future()
            self._probes[probe] = fut
            sync.setsockopt(zmq.SUBSCRIBE, probe)
            self._loop.call_soon(self._drain, sync)  # a socket call may consume the FD's edge: re-check
            try:
                denied = await asyncio.wait_for(fut, max(0.001, min(wait, deadline - loop.time())))
                if denied:
                    raise SubscriptionDenied(
                        f"the bus refused subscription(s) {denied} on {self.endpoint}: this key's role "
                        "(bus.curve.roles on the proxy) does not allow them, or the proxy's subscription table "
                        "is full (bus.max_subscriptions; see stats/bus subscriptions_table_full)"
                    )
                return
            except TimeoutError:
                if loop.time() >= deadline:
                    raise BusNotReady(f"no proxy answered on {self.endpoint} within {timeout}s") from None
                wait = min(wait * 2, 0.5)
            finally:
                self._probes.pop(probe, None)
                sync.setsockopt(zmq.UNSUBSCRIBE, probe)

    def close(self) -> None:
        self._closed = True
        for asock, sync in self._sockets:
            self._unwatch(sync)
            asock.close(linger=0)
        self._sockets.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # recv() wakes and raises EOFError

    async def __aenter__(self) -> Subscriber:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- receiving -------------------------------------------------------------------------------------

    def _watch(self, sync: zmq.Socket) -> None:
        """Drain `sync` from a loop reader callback whenever its ZMQ_FD signals (no task, no future)."""
        if sync in self._watched or self._closed:
            return
        self._loop.add_reader(sync.FD, self._drain, sync)
        self._watched.add(sync)
        self._loop.call_soon(self._drain, sync)  # messages that arrived before the reader was added

    def _unwatch(self, sync: zmq.Socket) -> None:
        if sync in self._watched:
            self._watched.discard(sync)
            try:
                self._loop.remove_reader(sync.FD)
            except (RuntimeError, ValueError, zmq.ZMQError):  # loop or socket already closed
                pass

    def _drain(self, sync: zmq.Socket) -> None:
        """Read every queued multipart without blocking (one batch per wake-up), ingest, wake the consumer.

        ZMQ_FD is edge-like: it signals once, and only reading until EAGAIN re-arms it. So a batch that
        stops early (batch limit) reschedules itself, and back-pressure stops watching until there is room.
        """
        if self._closed or sync not in self._watched:
            return
        ingested = 0
        try:
            for _ in range(self._batch):
                if self._full():  # back-pressure: let ZMQ queue (and drop)
                    self._unwatch(sync)
                    self._paused.append(sync)
                    break
                try:  # = recv_multipart(NOBLOCK, copy=False), minus a getsockopt(RCVMORE) per part
                    frame = sync.recv(_NOBLOCK, copy=False)
                    parts = [frame]
                    while frame.more:  # the parts of a multipart arrive together: these do not block
                        frame = sync.recv(_NOBLOCK, copy=False)
                        parts.append(frame)
                except zmq.Again:
                    break
                try:
                    self._ingest(parts)
                except Exception as exc:  # a bug on some input must cost that message, never the socket
                    self.stats.bad["internal"] += 1
                    if self._rate_limited.should_log("internal") is not None:
                        self.log.error("message handling failed", error=f"{type(exc).__name__}: {exc}")
                ingested += 1
            else:
                self._loop.call_soon(self._drain, sync)  # more may be queued; FD will not signal again
        except zmq.ZMQError as exc:
            if not self._closed:
                self.log.error("subscriber socket failed", error=str(exc))
                self.close()
            return
        if ingested and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _full(self) -> bool:
        return len(self._order) >= self._max_pending or self._pending_bytes >= self._max_pending_bytes

    def _resume(self) -> None:
        """Room again after back-pressure: watch the paused sockets and drain what ZMQ queued meanwhile."""
        paused, self._paused = self._paused, []
        for sync in paused:
            if not self._closed:
                self._watch(sync)

    def _ingest(self, parts: list[zmq.Frame]) -> None:
        topic_b = parts[0].bytes
        if topic_b.startswith(INTERNAL_PREFIX):
            fut = self._probes.get(topic_b)
            if fut is not None and not fut.done():
                try:
                    ready = decode(parts, limits=self._limits).msg
                    fut.set_result(ready.denied if isinstance(ready, BusReady) else [])
                except DecodeError:
                    fut.set_result([])  # a proxy that predates BusReady answers with an empty body
            return
        self.stats.received += 1
        try:
            if self.raw:
                header = peek(parts, limits=self._limits)
                if len(parts) > 2:  # recorders and bridges get bytes, never shared-memory references
                    parts = shm.materialize(parts, allowed=self._resolve is not None)
                item: Any = RawMessage(header, parts, time.time_ns())
                nbytes = sum(len(p) for p in parts)
            elif self._resolve is not None and len(parts) == 3 and self._resolve.is_ref(parts[2]):
                # a shared-memory frame: mapped when delivered, so that a queued one holds no slot
                header = peek(parts, limits=self._limits)
                item = _Deferred(parts)
                nbytes = sum(len(p) for p in parts)
            else:
                item = decode(parts, limits=self._limits, resolve=self._resolve)
                header = item
                nbytes = item.nbytes
        except DecodeError as exc:
            self._reject(exc, topic_b)
            return
        self._check_seq(header.src, header.topic, header.seq)
        policy = self._forced_policy or self._policy_of.get(header.topic)
        if policy is None:
            if len(self._policy_of) >= 4096:  # topics are the peers' choice: bounded, rebuilt when full
                self._policy_of.clear()
            policy = self._policy_of[header.topic] = self.config.policy(header.topic)
        self._pending_bytes += nbytes
        if policy == "latest":
            old = self._latest.get(header.topic)
            if old is not None:
                self.stats.superseded += 1
                self._pending_bytes -= old[1]
            else:
                self._order.append(header.topic)
            self._latest[header.topic] = (item, nbytes)
        else:
            self._order.append((item, nbytes))

    def _check_seq(self, src: str, topic: str, seq: int) -> None:
        key = (src, topic)
        last = self._last_seq.get(key)
        self._last_seq[key] = seq
        if last is None or seq == last + 1:
            return
        if last + 1 < seq <= last + MAX_GAP:
            missing = seq - last - 1
            self.stats.gaps += missing
            suppressed = self._rate_limited.should_log(("gap", src))
            if suppressed is not None:
                self.log.warning("gap in stream", src=src, topic=topic, missing=missing, gaps_total=self.stats.gaps)
        else:
            self.stats.resets += 1
            suppressed = self._rate_limited.should_log(("reset", src))
            if suppressed is not None:
                self.log.info("publisher restarted", src=src, topic=topic, seq=seq, last_seq=last)

    def recv_nowait(self) -> Envelope | RawMessage | None:
        while self._order:
            head = self._order.popleft()
            if isinstance(head, str):
                entry = self._latest.pop(head, None)
                if entry is None:
                    continue
            else:
                entry = head
            item, nbytes = entry
            self._pending_bytes -= nbytes
            if self._paused and not self._full():
                self._resume()
            if type(item) is _Deferred:
                item = self._map(item.parts)
                if item is None:
                    continue
            self.stats.delivered += 1
            return item
        return None

    def _map(self, parts: list[Any]) -> Envelope | None:
        """Decode a shared-memory frame at delivery. A reference not newer than a frame this subscriber
        delivered is replaced by its ring's newest frame (or dropped when there is none); one whose slot was
        reused meanwhile likewise: a subscriber that falls behind gets the newest frame, never old pixels."""
        try:
            newer = self._resolve.precheck(parts)
            if newer is not None:
                self.stats.superseded += 1
                if not newer:
                    return None
                parts = newer
            try:
                return decode(parts, limits=self._limits, resolve=self._resolve)
            except shm.Stale as exc:
                if exc.newer is None:
                    raise
                self.stats.superseded += 1
                return decode(exc.newer, limits=self._limits, resolve=self._resolve)
        except DecodeError as exc:
            self._reject(exc, bytes(parts[0]))
            return None

    def _reject(self, exc: DecodeError, topic_b: bytes) -> None:
        """Count (and log, rate-limited) a message that cannot be delivered."""
        if exc.reason == "shm_stale":  # a frame overwritten before we read it (or older than one delivered)
            if getattr(exc, "superseded", False):
                self.stats.superseded += 1
            else:
                self.stats.shm_stale += 1
            return
        self.stats.bad[exc.reason] += 1
        source = topic_b[:80].decode("utf-8", "replace")
        suppressed = self._rate_limited.should_log(("bad", source))
        if suppressed is not None:
            self.log.warning(
                "dropped bad message",
                topic=source,
                reason=exc.reason,
                detail=exc.detail,
                suppressed=suppressed,
                bad_total=sum(self.stats.bad.values()),
            )

    async def recv(self, timeout: float | None = None) -> Envelope | RawMessage:
        """Next message; TimeoutError after `timeout` seconds; EOFError once closed."""
        if not self._started:
            await self.start()
        item = self.recv_nowait()  # fast path: no timeout context, no future while messages are queued
        if item is not None:
            return item
        async with asyncio.timeout(timeout):
            while True:
                if self._closed:
                    raise EOFError("subscriber closed")
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                item = self.recv_nowait()
                if item is not None:
                    return item

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Envelope | RawMessage:
        try:
            return await self.recv()
        except EOFError:
            raise StopAsyncIteration from None
