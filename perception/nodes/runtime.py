"""The node runtime: sockets, the exception-safe handler loop, heartbeats, clean shutdown.

A node subclasses `Node`, lists the topic prefixes it reads in `topics`, overrides `process(env)` (and
optionally `setup`, `background` and `teardown`) and calls `self.publish(topic, msg)`. The runtime
- connects a Publisher and a Subscriber (both complete the readiness handshake before `process` runs);
- runs `process` for each message; an exception there is logged (rate-limited) and counted, never fatal;
- publishes `Stats` on stats/<node> every `bus.stats_interval_s`: the node's counters, the subscriber's
  (received, superseded, gaps, bad), `ready`, `uptime_s`, `cpu_pct`, `rss_mb`;
- stops on SIGTERM / SIGINT (cancel, wait for tasks with a timeout, close sockets) and when its
  parent dies (PR_SET_PDEATHSIG plus a ppid watchdog), so a killed launcher leaves no orphans.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import os
import signal
import time
from typing import Any, ClassVar

import numpy as np
import psutil

from bus.codec import Envelope
from bus.logs import RateLimited, get_logger
from bus.message import Message, Stats
from bus.pubsub import Publisher, Subscriber
from bus.runtime import wait_first, wind_down
from perception.config import AppConfig

PARENT_ENV = "PERCEPTION_PARENT_PID"


class LatencyWindow:
    """The last `n` latencies (ms) for p50/p99 in stats: bounded memory, cheap to update."""

    def __init__(self, n: int = 2000) -> None:
        self.values: collections.deque[float] = collections.deque(maxlen=n)

    def add(self, ms: float) -> None:
        self.values.append(ms)

    def summary(self, prefix: str) -> dict[str, float]:
        if not self.values:
            return {}
        arr = np.fromiter(self.values, dtype=np.float64)
        return {f"{prefix}_p50_ms": round(float(np.percentile(arr, 50)), 2),
                f"{prefix}_p99_ms": round(float(np.percentile(arr, 99)), 2),
                f"{prefix}_mean_ms": round(float(arr.mean()), 2)}


class Node:
    """Base class of every pipeline node; one instance per OS process."""

    name: ClassVar[str] = "node"
    topics: ClassVar[tuple[str, ...]] = ()  # subscribed topic prefixes; () = publish only

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.counters: collections.Counter[str] = collections.Counter()
        self.log = get_logger(f"node.{self.name}", node=self.name)
        self.pub: Publisher | None = None
        self.sub: Subscriber | None = None
        self.ready = False
        self._errors = RateLimited(1.0)
        self._started = time.monotonic()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # first call primes the counter

    # -- to override --------------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Load models, open sources: runs before subscribing, so nothing queues up meanwhile."""

    async def process(self, env: Envelope) -> None:
        """Handle one message. Exceptions are counted and logged; the loop goes on."""

    def background(self) -> list[Any]:
        """Extra coroutines that run beside the handler loop (capture loop, RPC server, workers)."""
        return []

    async def teardown(self) -> None:
        """Release resources; runs on shutdown after the tasks are cancelled."""

    def extra_stats(self) -> dict[str, float]:
        return {}

    # -- helpers ------------------------------------------------------------------------------------------

    def publish(self, topic: str, msg: Message) -> None:
        assert self.pub is not None, "publish before run()"
        self.pub.publish_nowait(topic, msg)
        self.counters["published"] += 1

    def report_error(self, what: str, exc: BaseException, **context: Any) -> None:
        """Count an error and log it (at most once a second per kind) with context."""
        self.counters["errors"] += 1
        self.counters[f"errors.{what}"] += 1
        suppressed = self._errors.should_log(what)
        if suppressed is not None:
            self.log.error(f"{what} failed", error=f"{type(exc).__name__}: {exc}", suppressed=suppressed,
                           **context)

    def stats(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.counters.items()}
        if self.sub is not None:
            out.update({f"sub.{k}": v for k, v in self.sub.stats.as_counters().items()})
        mem = self._proc.memory_info()
        out.update({
            "ready": float(self.ready),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "cpu_pct": round(self._proc.cpu_percent(None), 1),
            "rss_mb": round(mem.rss / 1e6, 1),
            "pid": float(os.getpid()),
        })
        out.update(self.extra_stats())
        return out

    # -- the loop -----------------------------------------------------------------------------------------

    async def _handle_messages(self) -> None:
        assert self.sub is not None
        async for env in self.sub:
            self.counters["received"] += 1
            try:
                await self.process(env)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad message never stops a node
                self.report_error("process", exc, topic=env.topic, type=env.type)

    async def _heartbeat(self) -> None:
        interval = self.config.bus.stats_interval_s
        while True:
            try:
                self.publish(f"stats/{self.name}", Stats(node=self.name, counters=self.stats()))
            except Exception as exc:
                self.report_error("heartbeat", exc)
            await asyncio.sleep(interval)

    async def _watch_parent(self) -> None:
        """Exit when the launcher that started us is gone (backs up PR_SET_PDEATHSIG)."""
        parent = int(os.environ[PARENT_ENV])
        while True:
            if os.getppid() != parent:
                self.log.warning("parent process gone, stopping")
                return
            await asyncio.sleep(0.5)

    async def run(self) -> None:
        """Run until cancelled (or a background task ends); clean up either way."""
        bus = self.config.bus
        self.pub = Publisher(bus, src=self.name)
        tasks: list[asyncio.Task] = []
        try:
            await self.pub.ready()
            await self.setup()
            if self.topics:
                self.sub = Subscriber(bus, self.topics, name=self.name)
                await self.sub.start()
            self.ready = True
            tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
            if os.environ.get(PARENT_ENV):
                tasks.append(asyncio.create_task(self._watch_parent(), name="watch-parent"))
            if self.sub is not None:
                tasks.append(asyncio.create_task(self._handle_messages(), name="handler"))
            for coro in self.background():
                tasks.append(asyncio.create_task(coro))
            self.log.info("node up", topics=list(self.topics))
            await wait_first(tasks)
        finally:
            await wind_down(tasks, self.teardown, log=self.log)
            if self.sub is not None:
                self.sub.close()
            self.pub.close(linger_ms=500)
            self.log.info("node stopped", **{k: v for k, v in self.counters.items() if "." not in k})


def die_with_parent() -> None:
    """Linux: SIGTERM this process when the parent (the launcher) dies, even by SIGKILL."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: the ppid watchdog in Node.run still applies
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        raise SystemExit(0)


async def serve(node: Node) -> int:
    """Run `node` until SIGTERM/SIGINT, then shut it down cleanly. Exit code: 0 stopped, 1 failed."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(node.run(), name=f"node-{node.name}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except Exception as exc:  # the supervisor restarts us; say why first
        node.log.exception("node failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0
