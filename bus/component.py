"""One runtime for everything on the bus: declared inputs and outputs, one lifecycle, one signal path.

Pipeline nodes (perception/nodes) and skills (skills/) are both `Component`s:

    class Narrator(Component):
        name = "narrator"
        outputs = {"notes": Output("notes/{cam}", Note)}   # topic fields come from the message

        @on("captions/{cam}", Caption)                     # typed: only Caption messages reach it
        async def on_caption(self, caption: Caption) -> None:
            self.publish(Note(cam=caption.cam, text=caption.text))   # -> notes/<cam>

In the spirit of rclpy's `create_subscription(MsgType, topic, cb)` / `create_publisher(MsgType, topic)`
and dora's dataflow YAML, the declarations are data: `component_inputs(cls)` and `cls.outputs` tell a
launcher (or `perception graph`) who feeds whom before any process starts.

The runtime
- connects a Publisher and, when there are inputs, a Subscriber to exactly their topic prefixes (both
  finish the readiness handshake before `setup` returns control to the handlers);
- calls every handler whose topic prefix and message type match; a message of another type is counted
  as `ignored`; a handler that raises is counted and logged (once a second per handler), never fatal;
- publishes `Stats` on stats/<bus name> every `bus.stats_interval_s` (counters, subscriber stats,
  `ready`, `uptime_s`, `cpu_pct`, `rss_mb`, `pid`, plus `extra_stats()`);
- stops when cancelled, when one `background()` coroutine returns, after `duration`, or on `stop()`,
  and winds down the same way each time: tasks cancelled, `teardown()` (with a timeout), sockets closed.
`serve(component)` runs one component as a process's main (SIGTERM / SIGINT stop it cleanly) and
`run_component` does the same for scripts and CLIs that want the counters (and errors) back.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
import string
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

import psutil

from bus import shm
from bus.codec import Envelope
from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.message import Message, Stats
from bus.pubsub import Publisher, Subscriber
from bus.runtime import run_until_stopped, wait_first, wind_down

INPUTS_ATTR = "__component_inputs__"


def _prefix(topic: str) -> str:
    """What a subscription to `topic` needs: its text before the first `{field}`."""
    return topic.split("{", 1)[0]


@dataclass(frozen=True)
class Output:
    """A declared output: a topic template whose `{fields}` are read from each published message."""

    topic: str  # e.g. "embeddings/{cam}"
    type: type[Message]

    def __post_init__(self) -> None:
        fields = [f for _, f, _, _ in string.Formatter().parse(self.topic) if f]
        object.__setattr__(self, "_fields", tuple(fields))
        unknown = [f for f in fields if f not in self.type.model_fields]
        if unknown:
            raise TypeError(f"output {self.topic!r}: {self.type.__name__} has no field(s) {unknown}")

    @property
    def prefix(self) -> str:
        return _prefix(self.topic)

    def topic_for(self, msg: Message) -> str:
        return self.topic.format_map({f: getattr(msg, f) for f in self._fields})  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Input:
    """A declared input: messages on topics starting with `prefix(topic)`, of `type` (None: any, the
    handler then gets the `Envelope`), go to the method `handler`."""

    topic: str  # "frames/{cam}" (a template) or "frames/" (a prefix)
    type: type[Message] | None
    handler: str

    @property
    def prefix(self) -> str:
        return _prefix(self.topic)


def on(topic: str, msg_type: type[Message] | None = None) -> Callable[[Callable], Callable]:
    """Method decorator declaring an input: call this method with each `msg_type` message on `topic`
    (with the `Envelope` when `msg_type` is None). Sync or async methods; stack it for several topics."""

    def mark(fn: Callable) -> Callable:
        setattr(fn, INPUTS_ATTR, (*getattr(fn, INPUTS_ATTR, ()), (topic, msg_type)))
        return fn

    return mark


def component_inputs(cls: type) -> list[Input]:
    """The inputs a component class declares with `@on`, in method order."""
    out = []
    for attr, value in inspect.getmembers(cls):
        for topic, msg_type in getattr(value, INPUTS_ATTR, ()):
            out.append(Input(topic, msg_type, attr))
    return out


class LatencyWindow:
    """The last `n` latencies (ms) for p50/p99 in stats: bounded memory, cheap to update."""

    def __init__(self, n: int = 2000) -> None:
        self.values: collections.deque[float] = collections.deque(maxlen=n)

    def add(self, ms: float) -> None:
        self.values.append(ms)

    def summary(self, prefix: str) -> dict[str, float]:
        if not self.values:
            return {}
        import numpy as np

        arr = np.fromiter(self.values, dtype=np.float64)
        return {
            f"{prefix}_p50_ms": round(float(np.percentile(arr, 50)), 2),
            f"{prefix}_p99_ms": round(float(np.percentile(arr, 99)), 2),
            f"{prefix}_mean_ms": round(float(arr.mean()), 2),
        }


class Component:
    """Base class of every pipeline node and skill; one asyncio loop, sockets owned by `run()`."""

    name: ClassVar[str] = "component"
    outputs: ClassVar[dict[str, Output]] = {}  # name -> Output; stats/<bus name> is implicit
    teardown_timeout_s: ClassVar[float] = 5.0
    log_kind: ClassVar[str] = "app"  # logger name prefix and the log key naming the component (node, skill)

    def __init__(self, bus: BusConfig) -> None:
        self.bus = bus
        self.counters: collections.Counter[str] = collections.Counter()
        self.log = get_logger(f"{self.log_kind}.{self.name}", **{self.log_kind: self.name})
        self.pub: Publisher | None = None
        self.sub: Subscriber | None = None
        self.ready = asyncio.Event()  # set once subscribed and serving
        self.current: Envelope | None = None  # the message being handled
        self._errors = RateLimited(1.0)
        self._stop: asyncio.Event | None = None
        self._started = time.monotonic()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first call primes the counter
        self._by_type: dict[type[Message], Output] = {}
        for out in self.outputs.values():  # a type published on two outputs must name one at publish
            self._by_type[out.type] = None if out.type in self._by_type else out  # type: ignore[assignment]

    # -- declarations -------------------------------------------------------------------------------------

    @property
    def bus_name(self) -> str:
        """The component's name on the bus: the `src` of what it publishes, stats/<bus_name>."""
        return self.name

    def inputs(self) -> list[Input]:
        """What this instance subscribes to (the class's `@on` declarations; subclasses may narrow)."""
        return component_inputs(type(self))

    @property
    def topics(self) -> list[str]:
        return sorted({i.prefix for i in self.routes})

    # -- to override --------------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Load models, open sources: runs before subscribing, so nothing queues up meanwhile."""

    def background(self) -> list[Coroutine[Any, Any, Any]]:
        """Coroutines that run beside the handlers (a capture loop, an RPC server, a planner's tick);
        the component stops when one of them returns."""
        return []

    async def teardown(self) -> None:
        """Release resources; runs on every exit, after the tasks are cancelled."""

    def extra_stats(self) -> dict[str, float]:
        return {}

    def busy(self) -> bool:
        """Whether work already taken in is unfinished outside a handler (a model thread's window, a
        decode queue). `perception test` steps a pipeline on to its next input only once every component
        is idle, which is what makes an offline run independent of the machine's speed."""
        return False

    # -- helpers ------------------------------------------------------------------------------------------

    def publish(self, msg: Message, output: str | None = None) -> int:
        """Publish `msg` on its declared output (found by the message's type, or named); returns its seq."""
        if self.pub is None:
            raise RuntimeError(f"{self.bus_name}: publish() called before run() connected to the bus")
        out = self.outputs[output] if output is not None else self._by_type.get(type(msg))
        if out is None:
            declared = {k: f"{o.topic} ({o.type.__name__})" for k, o in self.outputs.items()}
            raise TypeError(
                f"{self.bus_name} declares no single output for {type(msg).__name__} "
                f"(outputs: {declared}); declare one in `outputs` or name it"
            )
        if not isinstance(msg, out.type):
            raise TypeError(f"output {out.topic!r} carries {out.type.__name__}, got {type(msg).__name__}")
        seq = self.pub.publish_nowait(out.topic_for(msg), msg)
        self.counters["published"] += 1
        return seq

    def stop(self) -> None:
        """Ask `run()` to return (from a handler or a background task)."""
        if self._stop is not None:
            self._stop.set()

    def report_error(self, what: str, exc: BaseException, **context: Any) -> None:
        """Count an error and log it (at most once a second per kind) with its context."""
        self.counters["errors"] += 1
        self.counters[f"errors.{what}"] += 1
        suppressed = self._errors.should_log(what)
        if suppressed is not None:
            self.log.error(
                self.error_event(what),
                handler=what,
                error=f"{type(exc).__name__}: {exc}",
                suppressed=suppressed,
                errors_total=self.counters["errors"],
                exc_info=exc,
                **context,
            )

    def error_event(self, what: str) -> str:
        return f"{what} failed"

    def stats(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.counters.items()}
        if self.sub is not None:
            out.update({f"sub.{k}": v for k, v in self.sub.stats.as_counters().items()})
        mem = self._proc.memory_info()
        out.update(
            {
                "ready": float(self.ready.is_set()),
                "uptime_s": round(time.monotonic() - self._started, 3),
                "cpu_pct": round(self._proc.cpu_percent(None), 1),
                "rss_mb": round(mem.rss / 1e6, 1),
                "pid": float(os.getpid()),
            }
        )
        if self.pub is not None:  # frames sent by reference (sent, full, oversize, rings)
            out.update({f"pub.shm.{k}": float(v) for k, v in self.pub.shm_stats.items()})
        out.update({f"shm.{k}": float(v) for k, v in shm.mapper_stats().items()})  # frames mapped here
        out.update(self.extra_stats())
        return out

    # -- the loop -----------------------------------------------------------------------------------------

    @property
    def routes(self) -> list[Input]:
        routes = self.__dict__.get("_routes")
        if routes is None:
            routes = self.__dict__["_routes"] = self.inputs()
        return routes

    def accepts(self, route: Input, msg: Message) -> bool:
        """Whether a typed handler takes `msg` (the type already matched); skills filter by camera."""
        return True

    async def dispatch(self, env: Envelope) -> bool:
        """Run every matching handler on one message; True if any handler took it."""
        took = False
        for route in self.routes:
            if not env.topic.startswith(route.prefix):
                continue
            if route.type is not None:
                if not isinstance(env.msg, route.type):
                    self.counters["ignored"] += 1
                    continue
                if not self.accepts(route, env.msg):
                    continue
                arg: Any = env.msg
            else:
                arg = env
            took = True
            self.current = env
            try:
                result = getattr(self, route.handler)(arg)
                if inspect.isawaitable(result):
                    await result
                self.counters[f"handled.{route.handler}"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad message or handler bug never stops a component
                self.report_error(route.handler, exc, topic=env.topic, seq=env.seq, src=env.src, type=env.type)
            finally:
                self.current = None
        return took

    async def _handle(self, max_messages: int | None) -> None:
        assert self.sub is not None
        taken = 0
        async for env in self.sub:
            self.counters["received"] += 1
            try:
                took = await self.dispatch(env)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in dispatch itself: still never fatal
                self.report_error("dispatch", exc, topic=env.topic)
                continue
            if self._stop is not None and self._stop.is_set():
                return  # stop() from a handler: no further message is handled
            if took:
                taken += 1
                if max_messages is not None and taken >= max_messages:
                    return

    async def _heartbeat(self) -> None:
        assert self.pub is not None
        topic = f"stats/{self.bus_name}"
        while True:
            try:
                self.pub.publish_nowait(topic, Stats(node=self.bus_name, counters=self.stats()))
            except Exception as exc:
                self.report_error("heartbeat", exc)
            await asyncio.sleep(self.bus.stats_interval_s)

    def _extra_tasks(self) -> list[Coroutine[Any, Any, Any]]:
        """Runtime tasks a subclass adds (the node's parent watchdog)."""
        return []

    async def run(self, *, duration: float | None = None, max_messages: int | None = None) -> dict[str, float]:
        """Connect, `setup()`, subscribe, then handle messages until cancelled, `duration` s pass,
        `max_messages` were handled, a background task returns or `stop()` is called. Returns the counters."""
        self._stop = asyncio.Event()
        self.pub = Publisher(self.bus, src=self.bus_name)
        tasks: list[asyncio.Task] = []
        try:
            await self.pub.ready()
            await self.setup()
            if self.routes:
                self.sub = Subscriber(self.bus, self.topics, name=self.bus_name)
                await self.sub.start()
                tasks.append(asyncio.create_task(self._handle(max_messages), name="handlers"))
            for coro in [*self.background(), *self._extra_tasks()]:
                tasks.append(asyncio.create_task(coro))
            tasks.append(asyncio.create_task(self._stop.wait(), name="stop"))
            beat = asyncio.create_task(self._heartbeat(), name="heartbeat")
            self.ready.set()
            self.log.info(f"{self.log_kind} up", topics=self.topics, outputs=[o.topic for o in self.outputs.values()])
            try:
                await wait_first(tasks, timeout=duration)
            finally:
                beat.cancel()
                tasks.append(beat)
            return dict(self.counters)
        finally:
            await wind_down(tasks, self.teardown, log=self.log, teardown_timeout_s=self.teardown_timeout_s)
            self._close()
            if self.sub is not None:
                self.sub.close()
            self.pub.close(linger_ms=500)
            self.log.info(f"{self.log_kind} stopped", **{k: v for k, v in self.counters.items() if "." not in k})

    def _close(self) -> None:
        """Sockets a subclass opened besides pub/sub (closed after teardown)."""


async def run_component(
    component: Component,
    *,
    duration: float | None = None,
    max_messages: int | None = None,
    on_ready: Callable[[Component], Awaitable[None] | None] | None = None,
) -> dict[str, float]:
    """Run `component` until it ends or SIGTERM / SIGINT / `duration` stop it; errors propagate.
    `on_ready(component)` runs once it is subscribed. Returns its counters."""

    async def main() -> None:
        task = asyncio.ensure_future(component.run(duration=duration, max_messages=max_messages))
        try:
            if on_ready is not None:
                ready = asyncio.ensure_future(component.ready.wait())
                try:
                    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ready.cancel()
                if component.ready.is_set() and not task.done():
                    result = on_ready(component)
                    if inspect.isawaitable(result):
                        await result
            await task
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise

    await run_until_stopped(main)
    return dict(component.counters)


async def serve(component: Component) -> int:
    """A process's main: run `component` until SIGTERM / SIGINT. Exit code 0 when stopped, 1 when it
    failed (after logging why: the supervisor restarts the process)."""
    try:
        await run_component(component)
    except Exception as exc:
        component.log.exception(f"{component.log_kind} failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0
