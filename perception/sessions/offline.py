"""Run a recorded session's frames through a pipeline offline: in one process, on a private bus, in
lockstep, as fast as the machine allows and with the same result on any machine.

The nodes are the real ones (perception/nodes/*: the encoder, events and decoder nodes of the config's
`pipeline.nodes`; capture is replaced by the recording, the world by the recording's `watches/` broadcasts,
which are all it feeds the others). Their inputs that no node of the run publishes (frames/, watches/:
found from the node graph) are taken from the recording, in recorded order, one message at a time: after
each, the run waits until every node has received everything sent to it, no handler runs and no node is
`busy()` (a window on the model thread, a decode in hand), and every message published has come back
to the run's own subscriber. So the `latest` frames topic never conflates, no window goes stale, every
decode batch holds what one step produced, and windows are cut by frame index (the grid of
perception/nodes/windows.py) whatever the speed: the outputs are those of a live run that kept up.

At the end the nodes are stopped upstream first, as `perception up` stops them, so the events node's
teardown closes its open segments and the decoder captions them. Everything published is recorded with
the bus's own recorder (bus/record.py) into an MCAP file like any other recording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.component import Component
from bus.message import Message
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher, Subscriber
from bus.record import Recorder
from perception.config import AppConfig
from perception.nodes import NODE_NAMES
from perception.nodes.events import WORLD_SRC
from perception.nodes.graph import Graph, node_class
from perception.sessions.metadata import session_metadata
from perception.testing import private_bus, recorded_inputs

REPLACED = {"capture": "the recording's frames", "world": "the recording's watches/ broadcasts"}
STEP_TIMEOUT_S = 120.0  # one input's work (a window, its segment, its caption) takes far less


class SettleTimeout(TimeoutError):
    """The pipeline did not become idle after an input: a node is stuck (its log says why)."""


@dataclass
class OfflineRun:
    """What an offline run did: its output file and figures of its own speed (not latencies)."""

    out: Path
    nodes: list[str]
    inputs: int  # recorded messages fed (frames, watch lists)
    published: dict[str, int]  # per node
    wall_s: float  # start to end, model loading included
    feed_s: float  # from the first input fed to the last output recorded
    counters: dict[str, dict[str, float]] = field(default_factory=dict)  # per node, at the end

    @property
    def windows(self) -> int:
        return int(self.counters.get("encoder", {}).get("windows", 0))

    def figures(self) -> dict[str, Any]:
        enc = self.counters.get("encoder", {})
        return {
            "nodes": self.nodes,
            "inputs": self.inputs,
            "windows": self.windows,
            "wall_s": round(self.wall_s, 3),
            "feed_s": round(self.feed_s, 3),
            "windows_per_s": round(self.windows / self.feed_s, 2) if self.feed_s > 0 else None,
            "forward_p50_ms": enc.get("forward_p50_ms"),
            "forward_p99_ms": enc.get("forward_p99_ms"),
            "windows_dropped": enc.get("windows_dropped", 0),
        }


def offline_nodes(config: AppConfig) -> list[str]:
    """The configured nodes an offline run starts, upstream first."""
    return [n for n in reversed(NODE_NAMES) if n in config.pipeline.nodes and n not in REPLACED]


def offline_config(config: AppConfig, bus) -> AppConfig:
    """`config` on a private local bus: no CURVE, no tcp:// endpoints, no persisted world."""
    data = config.model_dump()
    data["bus"] = bus.model_dump()
    data["pipeline"]["encoder"]["rpc"] = ""
    data["pipeline"]["world"]["persist"] = None
    return AppConfig.model_validate(data)


class Lockstep:
    """Counts what each node was sent and waits until all of it is handled (see the module docstring)."""

    def __init__(self, nodes: dict[str, Component], sub: Subscriber) -> None:
        self.nodes, self.sub = nodes, sub
        self.sent = dict.fromkeys(nodes, 0)
        self.collected = 0
        self.on_output: Callable[[str], None] | None = None

    def deliver(self, topic: str) -> None:
        """A message on `topic` went out on the bus: every node subscribed to it will receive it."""
        for name, node in self.nodes.items():
            if any(topic.startswith(p) for p in node.topics):
                self.sent[name] += 1

    def idle(self, running: set[str]) -> bool:
        published = sum(int(n.counters["published"]) for n in self.nodes.values())
        if self.collected < published:
            return False
        for name in running:
            node = self.nodes[name]
            if node.counters["received"] < self.sent[name] or node.current is not None or node.busy():
                return False
        return True

    async def settle(self, running: set[str], tasks: dict[str, asyncio.Task]) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        spins = 0
        while True:
            while (env := self.sub.recv_nowait()) is not None:
                self.collected += 1
                self.deliver(env.topic)
            if self.idle(running):
                return
            for name, task in tasks.items():
                if name in running and task.done():
                    task.result()  # a node that failed raises here
                    raise RuntimeError(f"node {name} stopped during the run")
            if time.monotonic() > deadline:
                stuck = {
                    n: {
                        "sent": self.sent[n],
                        "received": self.nodes[n].counters["received"],
                        "busy": self.nodes[n].busy(),
                    }
                    for n in running
                }
                raise SettleTimeout(f"the pipeline did not settle within {STEP_TIMEOUT_S} s: {stuck}")
            spins += 1
            await asyncio.sleep(0 if spins < 20 else 0.0005)


async def run_offline(
    recording: str | Path,
    config: AppConfig,
    out: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    inputs: Iterable[tuple[str, Message]] | None = None,
    total: int = 0,
) -> OfflineRun:
    """Feed `recording`'s external inputs through `config`'s nodes in lockstep; record every output to
    `out` (replaced if it exists). `progress(done, total)` hears of the inputs as they are fed. `inputs`
    (read as they are fed; about `total` of them) replace the recording's: a ROS bag's frames
    (perception/ros2/bag_session.py)."""
    names = offline_nodes(config)
    if "encoder" not in names:
        raise ValueError(f"pipeline.nodes {config.pipeline.nodes} has no encoder: nothing to run the frames through")
    external = sorted({u.input.prefix for u in Graph.of(names).unwired()})
    if inputs is None:
        inputs = recorded_inputs(recording, external)
        if not any(topic.startswith("frames/") for topic, _ in inputs):
            raise ValueError(f"{recording} holds no frames/ messages: record the session with its frames")
        total = len(inputs)
    out = Path(out)
    t0 = time.monotonic()
    with private_bus() as bus:
        cfg = offline_config(config, bus)
        nodes = {n: node_class(n)(cfg) for n in names}
        outputs = sorted({o.prefix for n in nodes.values() for o in n.outputs.values()})
        session = {**session_metadata(cfg), "offline": {"source": str(recording), "nodes": names}}
        recorder = Recorder(bus, out, topics=outputs, session=session, overwrite=True)
        async with proxy_in_background(bus):
            sub = await Subscriber(bus.model_copy(update={"latest_prefixes": []}), outputs, name="offline").start()
            pub = Publisher(bus, src="offline")
            world = Publisher(bus, src=WORLD_SRC)  # the recording's watch lists stand in for the world's
            recording_task = asyncio.create_task(recorder.run())
            tasks = {n: asyncio.create_task(node.run(), name=n) for n, node in nodes.items()}
            step = Lockstep(nodes, sub)
            try:
                await pub.ready()
                await world.ready()
                await _wait_ready(nodes, tasks, recorder, recording_task, cfg.pipeline.supervisor.startup_timeout_s)
                running = set(names)
                t_feed = time.monotonic()
                fed = 0
                for topic, msg in inputs:
                    await (world if topic.startswith("watches/") else pub).publish(topic, msg)
                    step.deliver(topic)
                    await step.settle(running, tasks)
                    fed += 1
                    if progress is not None:
                        progress(fed, max(total, fed))
                counters = {}
                for name in names:  # upstream first: each one's teardown output reaches the next
                    nodes[name].stop()
                    await tasks[name]
                    running.discard(name)
                    await step.settle(running, tasks)
                    counters[name] = dict(nodes[name].counters) | nodes[name].extra_stats()
                for _ in range(3000):  # the recorder's subscriber has its copy of everything (<= 30 s)
                    if recorder.stats.received >= step.collected or recording_task.done():
                        break
                    await asyncio.sleep(0.01)
                feed_s = time.monotonic() - t_feed
            finally:
                for task in tasks.values():
                    task.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
                recording_task.cancel()
                await asyncio.gather(recording_task, return_exceptions=True)
                sub.close()
                pub.close()
                world.close()
    return OfflineRun(
        out=out,
        nodes=names,
        inputs=fed,
        published={n: int(c.get("published", 0)) for n, c in counters.items()},
        wall_s=time.monotonic() - t0,
        feed_s=feed_s,
        counters=counters,
    )


async def _wait_ready(nodes, tasks, recorder, recording_task, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not (recorder.ready.is_set() and all(n.ready.is_set() for n in nodes.values())):
            for task in (*tasks.values(), recording_task):
                if task.done():
                    task.result()
                    raise RuntimeError(f"{task.get_name()} stopped before it was ready")
            await asyncio.sleep(0.05)
