"""The skills SDK: subclass `Skill`, override typed handlers, run it from Python or `perception skill`.

    class Greeter(Skill):
        name = "greeter"
        async def on_caption(self, caption: Caption) -> None:
            self.log.info("saw", text=caption.text)

Handlers (sync or async; override only the ones you need: only their topics are subscribed):
    on_caption(Caption)      captions/<cam>
    on_event(Event)          events/<cam>   (segments and watch crossings)
    on_embedding(Embedding)  embeddings/<cam>
    @on("prefix/") method    any topic prefix, called with the decoded `Envelope`
plus `setup()` (before subscribing), `main()` (a loop beside the handlers; the skill stops when it returns)
and `teardown()`. Helpers: `await self.publish(topic, msg)`, `self.world` (now/history/search/ask with
timeouts), `self.stop()`, `self.log`, `self.counters`.

A handler that raises is logged with context (handler, topic, seq, src; at most once a second per handler)
and counted in `counters["errors"]`; the skill keeps running. Like every node, a skill publishes its
counters on stats/skill.<name> once a second.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from bus.codec import Envelope
from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.message import Message, Stats
from bus.pubsub import Publisher, Subscriber
from bus.runtime import wait_first, wind_down
from perception.config import AppConfig
from perception.messages import Caption, Embedding, Event
from skills.world import WorldClient

TOPIC_ATTR = "__skill_topics__"


def on(prefix: str) -> Callable[[Callable], Callable]:
    """Method decorator: call this method with the `Envelope` of every message whose topic starts with `prefix`."""

    def mark(fn: Callable) -> Callable:
        setattr(fn, TOPIC_ATTR, (*getattr(fn, TOPIC_ATTR, ()), prefix))
        return fn

    return mark


@dataclass(frozen=True)
class Route:
    """One subscription: a topic prefix, the handler's name, and how to call it."""

    prefix: str
    handler: str
    msg_type: type[Message] | None  # typed handlers get the message; None: the Envelope


# typed handler name -> (topic root, message class)
TYPED_HANDLERS: dict[str, tuple[str, type[Message]]] = {
    "on_caption": ("captions/", Caption),
    "on_event": ("events/", Event),
    "on_embedding": ("embeddings/", Embedding),
}


class Skill:
    """Base class of every skill. One asyncio loop; the bus sockets are owned by `run()`."""

    name: ClassVar[str] = "skill"
    uses_bus: bool = True  # False: run() only calls setup/main/teardown (a skill working on a file)
    teardown_timeout_s: float = 5.0

    def __init__(self, config: AppConfig | BusConfig | None = None, *, camera: str | None = None,
                 rpc_timeout: float = 2.0) -> None:
        if config is None:
            config = AppConfig()
        elif isinstance(config, BusConfig):
            config = AppConfig(bus=config)
        self.config = config
        self.bus = config.bus
        self.camera = camera  # None: every camera
        self.rpc_timeout = rpc_timeout
        self.counters: collections.Counter[str] = collections.Counter()
        self.log = get_logger(f"skill.{self.name}", skill=self.name, **({"camera": camera} if camera else {}))
        self.pub: Publisher | None = None
        self.sub: Subscriber | None = None
        self.ready = asyncio.Event()
        self.current: Envelope | None = None  # the message being handled
        self._world: WorldClient | None = None
        self._errors = RateLimited(1.0)
        self._stop: asyncio.Event | None = None
        self.routes = self._routes()

    # -- command line (`perception skill NAME ...`) ----------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Add this skill's own options to its argparse parser."""

    @classmethod
    def from_args(cls, config: AppConfig, args: Any) -> Skill:
        """Build the skill from parsed options (common ones: `camera`, `rpc_timeout`)."""
        return cls(config, camera=args.camera, rpc_timeout=args.rpc_timeout)

    # -- to override --------------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Load what the handlers need (a model, a file) before subscribing."""

    async def on_caption(self, caption: Caption) -> None:
        """A decoded caption of one segment."""

    async def on_event(self, event: Event) -> None:
        """A closed segment (`kind == "segment"`) or a watch label crossing (`kind == "watch"`)."""

    async def on_embedding(self, embedding: Embedding) -> None:
        """The predicted text embedding of one sliding window."""

    async def main(self) -> None:
        """A loop beside the handlers (a planner's tick). Returning stops the skill; the default waits."""
        await asyncio.Event().wait()

    async def teardown(self) -> None:
        """Release resources; runs on every exit."""

    # -- helpers ------------------------------------------------------------------------------------------

    @property
    def world(self) -> WorldClient:
        """The world node's queries, created on first use (a skill that never asks opens no socket)."""
        if self._world is None:
            self._world = WorldClient(self.bus, timeout=self.rpc_timeout)
        return self._world

    async def publish(self, topic: str, msg: Message) -> int:
        """Publish one of your own messages (e.g. `skills.messages.Alert` on alerts/<cam>); returns its seq."""
        if self.pub is None:
            raise RuntimeError(f"skill {self.name!r}: publish() called before run() connected to the bus")
        seq = self.pub.publish_nowait(topic, msg)
        self.counters["published"] += 1
        return seq

    def stop(self) -> None:
        """Ask `run()` to return (from a handler or `main`)."""
        if self._stop is not None:
            self._stop.set()

    # -- wiring -------------------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        cam = self.camera or ""
        routes = []
        for handler, (root, msg_type) in TYPED_HANDLERS.items():
            if getattr(type(self), handler) is not getattr(Skill, handler):  # overridden: subscribe
                routes.append(Route(root + cam, handler, msg_type))
        for attr, value in inspect.getmembers(type(self)):
            for prefix in getattr(value, TOPIC_ATTR, ()):
                routes.append(Route(prefix, attr, None))
        return routes

    @property
    def topics(self) -> list[str]:
        return sorted({r.prefix for r in self.routes})

    async def _dispatch(self, env: Envelope) -> bool:
        """Run every matching handler on one message; True if any handler took it."""
        took = False
        for route in self.routes:
            if not env.topic.startswith(route.prefix):
                continue
            if route.msg_type is not None:
                if not isinstance(env.msg, route.msg_type):
                    self.counters["ignored"] += 1
                    continue
                if self.camera is not None and getattr(env.msg, "cam", self.camera) != self.camera:
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
            except Exception as exc:  # one bad message or handler bug never stops a skill
                self.report_error(route.handler, exc, topic=env.topic, seq=env.seq, src=env.src, type=env.type)
            finally:
                self.current = None
        return took

    def report_error(self, handler: str, exc: BaseException, **context: Any) -> None:
        self.counters["errors"] += 1
        self.counters[f"errors.{handler}"] += 1
        suppressed = self._errors.should_log(handler)
        if suppressed is not None:
            self.log.error("skill handler failed", handler=handler, error=f"{type(exc).__name__}: {exc}",
                           suppressed=suppressed, errors_total=self.counters["errors"], exc_info=exc, **context)

    def stats(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.counters.items()}
        if self.sub is not None:
            out.update({f"sub.{k}": v for k, v in self.sub.stats.as_counters().items()})
        return out

    async def _handle(self, max_messages: int | None) -> None:
        assert self.sub is not None
        taken = 0
        async for env in self.sub:
            self.counters["received"] += 1
            took = await self._dispatch(env)
            if self._stop is not None and self._stop.is_set():
                return  # stop() from a handler: no further message is handled
            if took:
                taken += 1
                if max_messages is not None and taken >= max_messages:
                    return

    async def _heartbeat(self) -> None:
        while True:
            try:
                self.pub.publish_nowait(f"stats/skill.{self.name}", Stats(node=f"skill.{self.name}", counters=self.stats()))
            except Exception as exc:
                self.report_error("heartbeat", exc)
            await asyncio.sleep(self.bus.stats_interval_s)

    async def run(self, *, duration: float | None = None, max_messages: int | None = None) -> dict[str, float]:
        """Connect, `setup()`, subscribe, then handle messages until `duration` s pass, `max_messages`
        messages were handled, `main()` returns, `stop()` is called or the task is cancelled. Returns the
        counters."""
        self._stop = asyncio.Event()
        if not self.uses_bus:
            try:
                await self.setup()
                self.ready.set()
                await self.main()
                return dict(self.counters)
            finally:
                await self.teardown()
        self.pub = Publisher(self.bus, src=f"skill.{self.name}")
        tasks: list[asyncio.Task] = []
        try:
            await self.pub.ready()
            await self.setup()
            if self.routes:
                self.sub = Subscriber(self.bus, self.topics, name=f"skill.{self.name}")
                await self.sub.start()
                tasks.append(asyncio.create_task(self._handle(max_messages), name="handlers"))
            if type(self).main is not Skill.main or not self.routes:
                tasks.append(asyncio.create_task(self.main(), name="main"))
            tasks.append(asyncio.create_task(self._stop.wait(), name="stop"))
            beat = asyncio.create_task(self._heartbeat(), name="heartbeat")
            self.ready.set()
            self.log.info("skill up", topics=self.topics)
            try:
                await wait_first(tasks, timeout=duration)
            finally:
                beat.cancel()
                tasks.append(beat)
            return dict(self.counters)
        finally:
            await wind_down(tasks, self.teardown, log=self.log, teardown_timeout_s=self.teardown_timeout_s)
            if self._world is not None:
                self._world.close()
                self._world = None
            if self.sub is not None:
                self.sub.close()
            self.pub.close(linger_ms=500)
            self.log.info("skill stopped", **{k: v for k, v in self.counters.items() if "." not in k})


def run_skill(skill: Skill, *, duration: float | None = None, max_messages: int | None = None,
              on_ready: Callable[[Skill], None] | None = None) -> dict[str, float]:
    """Blocking entry point for scripts: run until done, Ctrl-C or SIGTERM; returns the skill's counters.

    `on_ready(skill)` is called once the skill is subscribed (the CLI prints its readiness line there)."""
    from bus.runtime import run_until_stopped

    async def main() -> Any:
        task = asyncio.ensure_future(skill.run(duration=duration, max_messages=max_messages))
        if on_ready is not None:
            ready = asyncio.ensure_future(skill.ready.wait())
            try:
                await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                task.cancel()
                raise
            finally:
                ready.cancel()
            if skill.ready.is_set():
                on_ready(skill)
        try:
            return await task
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise

    asyncio.run(run_until_stopped(main))
    return dict(skill.counters)
