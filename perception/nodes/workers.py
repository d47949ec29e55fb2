"""Several encoder workers: which one encodes which camera, decided by every worker alike from the
heartbeats they all hear, with no broker and no election.

`pipeline.encoder.workers: N` runs N encoder processes, `encoder.0` ... `encoder.{N-1}`, each with its own
`ask` endpoint. Each worker publishes its heartbeat on stats/encoder.K through the proxy like every node,
and listens to the others' (a plain SUB on `stats/encoder.`). From the set of live workers every worker
computes the same assignment (a pure function of that set and the config):

- a configured camera's home is `encoder.assign[camera]`, else, in `pipeline.cameras` order, the worker
  with the fewest homes so far (cam0 -> 0, cam1 -> 1, ... without pins); while its home is live, the home
  encodes it;
- the cameras of dead homes go, in config order, each to the live worker holding the fewest cameras (the
  lowest index on a tie): the others' cameras stay where they are, and the load stays balanced;
- a camera that is not configured (a name somebody published frames with) goes to the live worker ranked
  first by rendezvous hashing of (camera, worker), which moves it only if that worker dies.

A worker is live from its first `ready` heartbeat until it has been silent `encoder.worker_timeout_s`; one
never heard counts as live for that long after this worker's own start, so that workers starting together
do not all take every camera. Per-camera order holds across hand-overs because only the owner keeps a
camera's frame ring: a camera that moves starts a new ring at its new worker, whose first window lies on
the same frame-index grid (perception/nodes/windows.py) after every window the old owner published. A
worker that joins claims its cameras only `claim_delay_s` after it is ready, when the others have heard
it and let go. Each worker's heartbeat carries `holds.<camera>` (the window of the S_V it keeps), which is
how the world routes an `ask` to the worker holding that camera.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bus.message import Stats
from bus.pubsub import Subscriber
from bus.rpc import RpcClient

WORKER_PREFIX = "encoder."
HOLDS_PREFIX = "holds."  # heartbeat counter key: holds.<camera> = window of the S_V kept


def worker_name(k: int) -> str:
    return f"{WORKER_PREFIX}{k}"


def worker_index(name: str, workers: int) -> int | None:
    """K of `encoder.K` when 0 <= K < workers, else None (anyone may publish on stats/encoder.whatever)."""
    if not name.startswith(WORKER_PREFIX):
        return None
    tail = name[len(WORKER_PREFIX) :]
    if not tail.isdigit() or len(tail) > 4:
        return None
    k = int(tail)
    return k if k < workers else None


def worker_names(workers: int) -> list[str]:
    """The encoder's process names: `encoder` alone, or `encoder.0` ... when there are several."""
    return ["encoder"] if workers <= 1 else [worker_name(k) for k in range(workers)]


def _rank(camera: str, worker: int) -> bytes:
    return hashlib.blake2b(f"{camera}\0{worker}".encode(), digest_size=8).digest()


@dataclass(frozen=True)
class WorkerPlan:
    """The config's part of the assignment: how many workers, the configured cameras, pinned homes."""

    workers: int
    cameras: tuple[str, ...]
    assign: dict[str, int] = field(default_factory=dict)
    homes: dict[str, int] = field(init=False, repr=False)  # configured camera -> its worker while live

    def __post_init__(self) -> None:
        homes = {c: k for c, k in self.assign.items() if c in self.cameras}
        load = [list(homes.values()).count(k) for k in range(self.workers)]
        for cam in self.cameras:  # the rest in config order, each to the least loaded (lowest index on a tie)
            if cam not in homes:
                k = min(range(self.workers), key=lambda w: (load[w], w))
                homes[cam] = k
                load[k] += 1
        object.__setattr__(self, "homes", homes)

    def home(self, camera: str) -> int | None:
        return self.homes.get(camera)

    def assignment(self, live: Iterable[int]) -> dict[str, int]:
        """Configured camera -> worker, for this set of live workers (every worker computes the same)."""
        alive = sorted(set(live))
        if not alive:
            return {}
        out: dict[str, int] = {}
        load = dict.fromkeys(alive, 0)
        orphans = []
        for cam in self.cameras:
            home = self.home(cam)
            if home in load:
                out[cam] = home
                load[home] += 1
            else:
                orphans.append(cam)
        for cam in orphans:
            k = min(alive, key=lambda w: (load[w], w))
            out[cam] = k
            load[k] += 1
        return out

    def owner(self, camera: str, live: Sequence[int], table: dict[str, int] | None = None) -> int | None:
        """The worker that encodes `camera` (configured: from the assignment; else rendezvous hashing)."""
        if not live:
            return None
        table = self.assignment(live) if table is None else table
        if camera in table:
            return table[camera]
        return max(live, key=lambda w: _rank(camera, w))


class Liveness:
    """Which workers are live, from their heartbeats, as seen by worker `me` (monotonic seconds)."""

    def __init__(self, workers: int, me: int, timeout_s: float, now: float) -> None:
        self.workers, self.me, self.timeout_s, self.started = workers, me, timeout_s, now
        self.last: dict[int, float] = {}

    def beat(self, k: int, now: float, ready: bool) -> None:
        if ready and 0 <= k < self.workers:
            self.last[k] = now

    def live(self, now: float) -> list[int]:
        out = []
        for k in range(self.workers):
            seen = self.last.get(k)
            if k == self.me or (seen is not None and now - seen <= self.timeout_s):
                out.append(k)
            elif seen is None and now - self.started <= self.timeout_s:
                out.append(k)  # not heard yet: it may be starting beside us
        return out


def holders(beats: dict[int, tuple[float, dict[str, float]]], now: float, timeout_s: float) -> dict[str, int]:
    """camera -> the live worker whose heartbeat says it holds the newest S_V of that camera."""
    best: dict[str, tuple[float, int]] = {}
    for k, (seen, counters) in beats.items():
        if now - seen > timeout_s:
            continue
        for key, window in counters.items():
            if key.startswith(HOLDS_PREFIX):
                cam = key[len(HOLDS_PREFIX) :]
                if cam not in best or window > best[cam][0]:
                    best[cam] = (window, k)
    return {cam: k for cam, (_, k) in best.items()}


class WorkerBeats:
    """The workers' latest heartbeats (monotonic time, `ready` and `holds.*` counters), heard on a SUB of
    its own: coordination between processes, not part of the node's dataflow."""

    def __init__(self, bus: Any, workers: int, name: str) -> None:
        self.bus, self.workers, self.name = bus, workers, name
        self.beats: dict[int, tuple[float, dict[str, float]]] = {}

    async def run(self, on_beat: Callable[[int, bool], None] | None = None) -> None:
        sub = Subscriber(self.bus, [f"stats/{WORKER_PREFIX}"], name=f"{self.name}.workers")
        await sub.start()
        try:
            async for env in sub:
                msg = getattr(env, "msg", None)
                if not isinstance(msg, Stats):
                    continue
                k = worker_index(msg.node, self.workers)
                if k is None:
                    continue
                kept = {key: v for key, v in msg.counters.items() if key == "ready" or key.startswith(HOLDS_PREFIX)}
                self.beats[k] = (time.monotonic(), kept)
                if on_beat is not None:
                    on_beat(k, bool(kept.get("ready")))
        finally:
            sub.close()

    def holders(self, timeout_s: float) -> dict[str, int]:
        return holders(self.beats, time.monotonic(), timeout_s)


def encoder_endpoint(config, worker: int | None = None) -> str:
    """The encoder's `ask` endpoint: pipeline.encoder.rpc or ipc://{runtime_dir}/encoder; worker K of
    several: `.K` appended to an ipc path, K added to a tcp port."""
    base = config.pipeline.encoder.rpc or f"ipc://{config.bus.runtime_dir}/encoder"
    if worker is None or config.pipeline.encoder.workers <= 1:
        return base
    if base.startswith("tcp://"):
        host, port = base.rsplit(":", 1)
        return f"{host}:{int(port) + worker}"
    return f"{base}.{worker}"


def encoder_endpoints(config) -> list[str]:
    """Every encoder worker's endpoint (one when there is one encoder)."""
    workers = config.pipeline.encoder.workers
    return [encoder_endpoint(config, k if workers > 1 else None) for k in range(workers)]


class EncoderRouter:
    """The client side of the encoder for the nodes that call it (world, events): `embed` to any worker
    (the DEALER spreads calls over those connected), `ask` to the worker holding the camera's S_V."""

    def __init__(self, config: Any, *, timeout: float, retries: int = 0, name: str = "encoder-client") -> None:
        self.config, self.timeout, self.retries = config, timeout, retries
        enc = config.pipeline.encoder
        self.workers, self.worker_timeout_s = enc.workers, enc.worker_timeout_s
        self.any = RpcClient(config.bus, endpoint=encoder_endpoints(config), timeout=timeout, retries=retries)
        self._endpoint = encoder_endpoint
        self.each: dict[int, RpcClient] = {}
        self.beats = WorkerBeats(config.bus, enc.workers, name) if enc.workers > 1 else None

    def background(self) -> list:
        return [self.beats.run()] if self.beats is not None else []

    def route(self, camera: str | None) -> tuple[int | None, str | None]:
        """(worker, camera) an ask goes to: the holder of `camera`, or of the first configured camera
        held by anyone when no camera is named; (None, camera) when nobody holds it (any worker says so)."""
        if self.beats is None:
            return None, camera
        held = self.beats.holders(self.worker_timeout_s)
        if camera is None:
            order = [c.name for c in self.config.pipeline.cameras if c.name in held] + sorted(held)
            camera = order[0] if order else None
        return held.get(camera) if camera is not None else None, camera

    def client(self, worker: int | None) -> RpcClient:
        if worker is None:
            return self.any
        if worker not in self.each:  # at most `workers` clients
            self.each[worker] = RpcClient(
                self.config.bus,
                endpoint=self._endpoint(self.config, worker),
                timeout=self.timeout,
                retries=self.retries,
            )
        return self.each[worker]

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        camera = params.get("camera")
        if method != "ask" or self.beats is None or not isinstance(camera, str | None):
            return await self.any.call(method, params)  # a malformed camera: the encoder says what is wrong
        worker, camera = self.route(camera or None)
        if camera is not None:
            params = {**params, "camera": camera}
        return await self.client(worker).call(method, params)

    def close(self) -> None:
        self.any.close()
        for c in self.each.values():
            c.close()
