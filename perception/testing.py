"""Test one component in-process: give it input messages, get back what it published.

    from perception.testing import private_bus, run_test

    async def test_red_spotter():
        with private_bus() as bus:
            result = await run_test(RedSpotter(bus), [caption("the red circle grows")])
        assert [a.phrase for a in result.of(Alert)] == ["red"]

    async def test_red_spotter_on_last_weeks_session():   # a recording (perception record) as the inputs
        with private_bus() as bus:
            spotter = RedSpotter(bus)
            result = await run_test(spotter, recorded_inputs("session.mcap", spotter.topics))

In the spirit of Pipecat's `run_test` and dora's `MockNode`, but with nothing mocked: `run_test` starts a
real proxy on the component's bus (a private ipc:// runtime directory from `private_bus`), runs the
component's whole lifecycle (setup, subscribe, handlers, teardown), publishes the inputs from a real
publisher and records, from a real subscriber, every message on the component's declared outputs -
including what `teardown` publishes (the events node flushes its open segments there).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bus.codec import Envelope
from bus.component import Component
from bus.config import BusConfig
from bus.mcapfile import iter_messages
from bus.message import Message
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher, Subscriber

M = TypeVar("M", bound=Message)


@contextlib.contextmanager
def private_bus(**overrides: object) -> Iterator[BusConfig]:
    """A BusConfig whose endpoints live in a fresh private directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="perception-test-"))
    try:
        yield BusConfig.local(path, **{"stats_interval_s": 0.2, "ready_timeout_s": 10.0, **overrides})
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class TestResult:
    """What a component published during `run_test` (stats/ excluded), in order, and its counters."""

    published: list[Envelope] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)

    __test__ = False  # not a pytest test class

    def of(self, msg_type: type[M]) -> list[M]:
        """The published messages of one type."""
        return [e.msg for e in self.published if isinstance(e.msg, msg_type)]

    def on(self, prefix: str) -> list[Message]:
        """The published messages whose topic starts with `prefix`."""
        return [e.msg for e in self.published if e.topic.startswith(prefix)]

    @property
    def topics(self) -> list[str]:
        return [e.topic for e in self.published]


Input = Message | tuple[str, Message]


def recorded_inputs(path: str | Path, topics: Sequence[str] | None = None) -> list[tuple[str, Message]]:
    """The messages of an MCAP recording (as `perception record` writes it) on `topics` (prefixes; None:
    all), in log-time order, as (topic, message) inputs for `run_test`. Messages of types this process does
    not know are skipped; any other damage raises, as a test should."""
    from bus.codec import DecodeError, decode
    from perception.plugins import load_message_types

    load_message_types()
    out = []
    for stored in iter_messages(path, topics=list(topics) if topics is not None else None):
        try:
            env = decode(stored.parts())
        except DecodeError as exc:
            if exc.reason != "unknown_type":
                raise
            continue
        out.append((env.topic, env.msg))
    return out


def input_topic(component: Component, msg: Message) -> str:
    """The topic a bare message is sent on: the first input route of the component that takes its type,
    with the template's `{fields}` filled from the message (`frames/{cam}` -> frames/cam0)."""
    for route in component.routes:
        if route.type is not None and isinstance(msg, route.type):
            if "{" not in route.topic:
                return route.topic
            return route.topic.format_map({k: getattr(msg, k) for k in type(msg).model_fields})
    raise ValueError(f"{component.bus_name} has no input for {type(msg).__name__}; give (topic, msg)")


async def run_test(
    component: Component,
    inputs: Sequence[Input] = (),
    *,
    until: Callable[[TestResult], bool] | None = None,
    settle_s: float = 0.3,
    timeout_s: float = 60.0,
) -> TestResult:
    """Run `component` on a proxy of its own bus, publish `inputs` (messages, or (topic, message) pairs)
    once it is subscribed, and return what it published.

    It stops when `until(result)` holds, or - without `until` - once every input was received and
    nothing new was published for `settle_s`; then the component is stopped (its teardown runs) and what
    it publishes meanwhile is collected too. TimeoutError after `timeout_s`."""
    result = TestResult()
    prefixes = sorted({o.prefix for o in component.outputs.values()})
    async with proxy_in_background(component.bus):
        sub = await Subscriber(component.bus, prefixes, name="test").start() if prefixes else None
        pub = Publisher(component.bus, src="test")
        task = asyncio.create_task(component.run())
        try:
            await pub.ready()
            ready = asyncio.create_task(component.ready.wait())
            await asyncio.wait({task, ready}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if task.done():
                task.result()  # a failing setup raises here
                raise RuntimeError(f"{component.bus_name} stopped before it was ready")
            if not component.ready.is_set():
                raise TimeoutError(f"{component.bus_name} was not ready within {timeout_s} s")
            for item in inputs:
                topic, msg = item if isinstance(item, tuple) else (input_topic(component, item), item)
                await pub.publish(topic, msg)
            async with asyncio.timeout(timeout_s):
                await _collect(component, sub, result, len(inputs), until, settle_s, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if sub is not None:  # what teardown published
                await _drain(sub, result, settle_s)
                sub.close()
            pub.close()
    result.counters = dict(component.counters)
    return result


async def _collect(
    component: Component,
    sub: Subscriber | None,
    result: TestResult,
    n_inputs: int,
    until: Callable[[TestResult], bool] | None,
    settle_s: float,
    task: asyncio.Task,
) -> None:
    quiet = 0.0
    while True:
        if until is not None and until(result):
            return
        if task.done():
            task.result()
            return
        handled = component.counters["received"] >= n_inputs and component.current is None  # none in a handler
        if until is None and handled and quiet >= settle_s:
            return
        env = await _next(sub, 0.05)
        if env is None:
            quiet += 0.05
        else:
            result.published.append(env)
            quiet = 0.0


async def _drain(sub: Subscriber, result: TestResult, settle_s: float) -> None:
    while (env := await _next(sub, settle_s)) is not None:
        result.published.append(env)


async def _next(sub: Subscriber | None, wait_s: float) -> Envelope | None:
    if sub is None:
        await asyncio.sleep(wait_s)
        return None
    try:
        env = await sub.recv(timeout=wait_s)
    except TimeoutError:
        return None
    return env if isinstance(env, Envelope) else None  # RawMessage: an undecodable one, not ours
