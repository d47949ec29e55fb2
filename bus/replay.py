"""Replay: an MCAP recording back onto the bus, with its original timing, like `ros2 bag play`.

Messages go out verbatim (topic, header bytes and buffers exactly as recorded: same `src`, `seq`, `t`),
so downstream nodes see what they saw live. Timing: message i is due at
`wall_start + (log_time_i - log_time_0) / rate`, measured on the monotonic clock; each send waits for its
own absolute deadline, so late sends never accumulate into drift. `rate == 0` sends as fast as the proxy
accepts.

Nothing is lost on the way to the proxy: the publisher waits for the proxy's handshake (`ready()`) and its
sockets are switched to XPUB_NODROP, so a full queue makes replay wait instead of dropping. Subscribers
must be attached before replay starts (the proxy cannot hold messages for a subscriber that has not
joined): start them first, or use `wait_for` (replay waits until a message arrives on each prefix, e.g.
a node's `stats/<node>` heartbeat) or `paused` (replay waits for `resume()`: Enter or SIGUSR1 in the CLI).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq

from bus.codec import DecodeError, decode, encode
from bus.config import BusConfig
from bus.logs import get_logger
from bus.mcapfile import StoredMessage, iter_messages
from bus.pubsub import Publisher, Subscriber


@dataclass
class ReplayStats:
    messages: int = 0
    bytes: int = 0
    loops: int = 0
    max_lag_ms: float = 0.0  # how late the latest-sent message was against its deadline
    wall_s: float = 0.0
    not_restamped: int = 0  # with restamp: messages of types this process does not know, sent as recorded


class NoDropPublisher(Publisher):
    """A Publisher whose sends wait for queue space instead of dropping (XPUB_NODROP), for replay.

    Proposed hook for bus/pubsub.py: a `nodrop=True` constructor flag and an awaitable `publish_raw`.
    """

    def __init__(self, config: BusConfig, **kw) -> None:
        super().__init__(config, **kw)
        for _asock, sync in self._sockets.values():
            sync.setsockopt(zmq.XPUB_NODROP, 1)

    async def send_raw(self, parts: list) -> None:
        topic = bytes(parts[0]).decode("utf-8", "replace")
        asock, sync = self._sockets[self.config.policy(topic)]
        while True:
            try:
                sync.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:
                await asock.poll(timeout=100, flags=zmq.POLLOUT)
        self.published += 1


class Replayer:
    """Republish `path` (optionally only `topics` prefixes, from `start_s` into the recording)."""

    def __init__(
        self,
        config: BusConfig,
        path: str | Path,
        *,
        rate: float = 1.0,
        loop: bool = False,
        topics: Iterable[str] | None = None,
        start_s: float = 0.0,
        paused: bool = False,
        wait_for: Iterable[str] = (),
        wait_timeout_s: float = 30.0,
        restamp: bool = False,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0 (0 = as fast as possible), got {rate}")
        if start_s < 0:
            raise ValueError(f"start must be >= 0 seconds, got {start_s}")
        self.config = config
        self.path = Path(path)
        self.rate = rate
        self.loop = loop
        self.topics = list(topics or [])
        self.start_s = start_s
        self.wait_for = list(wait_for)
        self.wait_timeout_s = wait_timeout_s
        self.restamp = restamp
        self.stats = ReplayStats()
        self.log = get_logger("bus.replay", path=str(self.path))
        self._running = asyncio.Event()
        if not paused:
            self._running.set()
        self._paused_at: float | None = None if not paused else time.monotonic()
        self._shift = 0.0  # seconds the schedule moved because of pauses
        self.started = asyncio.Event()  # set when the first message is about to go out

    # -- pause control (from a signal handler or another task) ---------------------------------------------

    def pause(self) -> None:
        if self._running.is_set():
            self._running.clear()
            self._paused_at = time.monotonic()
            self.log.info("replay paused")

    def resume(self) -> None:
        if not self._running.is_set():
            if self._paused_at is not None:
                self._shift += time.monotonic() - self._paused_at
            self._paused_at = None
            self._running.set()
            self.log.info("replay resumed")

    def toggle(self) -> None:
        self.pause() if self._running.is_set() else self.resume()

    # -- running -------------------------------------------------------------------------------------------

    async def _wait_for_topics(self) -> None:
        for prefix in self.wait_for:
            async with Subscriber(self.config, [prefix], name="replay-wait") as sub:
                try:
                    await sub.recv(timeout=self.wait_timeout_s)
                except TimeoutError:
                    raise TimeoutError(f"no message on {prefix!r} within {self.wait_timeout_s}s") from None
            self.log.info("subscriber side is up", topic=prefix)

    def _messages(self) -> Iterable[StoredMessage]:
        first = next(iter_messages(self.path), None)
        if first is None:
            return iter(())
        start_ns = first.log_time + int(self.start_s * 1e9) if self.start_s else None
        return iter_messages(self.path, self.topics, start_ns)

    async def run(self) -> ReplayStats:
        pub = NoDropPublisher(self.config, src="replay")
        t_begin = time.monotonic()
        try:
            await pub.ready()
            await self._wait_for_topics()
            while True:
                sent = await self._one_pass(pub)
                self.stats.loops += 1
                await asyncio.sleep(0)  # a cancel or pause lands between passes even at --rate 0
                if not self.loop or sent == 0:
                    break
        finally:
            pub.close(linger_ms=2000)
            self.stats.wall_s = time.monotonic() - t_begin
            self.log.info(
                "replay done",
                messages=self.stats.messages,
                loops=self.stats.loops,
                max_lag_ms=round(self.stats.max_lag_ms, 3),
                wall_s=round(self.stats.wall_s, 3),
            )
        return self.stats

    async def _one_pass(self, pub: NoDropPublisher) -> int:
        await self._running.wait()
        t0_rec: int | None = None
        wall0, wall0_ns = 0.0, 0
        sent = 0
        for msg in self._messages():
            if t0_rec is None:
                t0_rec = msg.log_time
                wall0 = time.monotonic()
                wall0_ns = time.time_ns()
                self._shift = 0.0
                self.started.set()
            if not self._running.is_set():
                await self._running.wait()
            if self.rate > 0:
                due = wall0 + self._shift + (msg.log_time - t0_rec) / 1e9 / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.stats.max_lag_ms = max(self.stats.max_lag_ms, -delay * 1e3)
            parts = msg.parts() if not self.restamp else self._restamped(msg, t0_rec, wall0_ns)
            await pub.send_raw(parts)
            sent += 1
            self.stats.messages += 1
            self.stats.bytes += len(msg.header) + sum(len(b) for b in msg.buffers)
            if self.rate == 0 and sent % 256 == 0:
                await asyncio.sleep(0)  # let other tasks (signals, pause) run
        return sent

    def _restamped(self, msg: StoredMessage, t0_rec: int, wall0_ns: int) -> list:
        """The message as if it happened now: every positive integer field whose name ends in `_ns` (capture
        times, spans: units are in every name) moves from the recording's clock to this replay's, and the
        envelope's `t` is the send time. Latencies measured downstream then mean something. A type this
        process does not know goes out as recorded (counted in `not_restamped`)."""
        try:
            env = decode(msg.parts())
        except DecodeError:
            self.stats.not_restamped += 1
            return msg.parts()
        scale = 1.0 / self.rate if self.rate > 0 else 1.0  # as fast as possible: keep the recorded spacing

        shift_ns = round(self._shift * 1e9)  # pauses move the schedule, and so the stamps

        def now_clock(t_ns: int) -> int:
            return wall0_ns + shift_ns + round((t_ns - t0_rec) * scale)

        fields = type(env.msg).model_fields
        update = {
            k: now_clock(v) for k in fields if k.endswith("_ns") and type(v := getattr(env.msg, k)) is int and v > 0
        }
        body = env.msg.model_copy(update=update)
        return encode(env.topic, body, seq=env.seq, src=env.src, t_ns=time.time_ns())
