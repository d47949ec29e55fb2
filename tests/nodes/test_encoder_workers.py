"""Two encoder workers under a real `perception up`: each camera encoded by one worker, `ask` routed to the
worker holding the camera, a SIGKILLed worker's camera taken over by the other and handed back once it
is restarted, and every camera's windows in order throughout."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
import time

from bus.message import Stats
from bus.pubsub import Subscriber
from bus.rpc import RpcClient, RpcError
from perception.config import load_config
from perception.messages import Embedding

from .conftest import child_env, interrupt, pipeline_config, popen_perception, short_tmp, write_config

CAMS = ("cam0", "cam1", "cam2")  # homes: cam0 -> encoder.0, cam1 -> encoder.1, cam2 -> encoder.0


class Seen:
    """Every embedding's (camera, window, worker) in arrival order, and the workers' pids."""

    def __init__(self) -> None:
        self.embeddings: list[tuple[str, int, str]] = []
        self.pids: dict[str, int] = {}

    async def listen(self, config) -> None:
        async with Subscriber(config.bus, ["embeddings/", "stats/encoder."], name="test") as sub:
            async for env in sub:
                if isinstance(env.msg, Embedding):
                    self.embeddings.append((env.msg.cam, env.msg.window, env.src))
                elif isinstance(env.msg, Stats) and env.msg.counters.get("ready"):
                    self.pids[env.msg.node] = int(env.msg.counters["pid"])

    def workers_of(self, cam: str, since: int = 0) -> list[str]:
        return [w for c, _, w in self.embeddings[since:] if c == cam]


async def until(what: str, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


async def ask(config, camera: str) -> dict:
    async with RpcClient(config.bus, timeout=10, retries=0) as rpc:  # via the world node
        return await rpc.call("ask", {"question": "what colour is it?", "choices": ["red", "blue"], "camera": camera})


async def asked_of(config, camera: str, worker: str, timeout: float = 15.0) -> bool:
    """Whether an ask about `camera` is answered by `worker` within `timeout` (the world hears who holds
    what from the workers' heartbeats, and forgets a dead one after worker_timeout_s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await ask(config, camera))["worker"] == worker:
                return True
        except RpcError:
            pass
        await asyncio.sleep(0.3)
    return False


async def test_two_workers_share_cameras_route_asks_and_take_over_a_dead_one(random_checkpoint):
    rdir = short_tmp("ew-")
    pipe = {
        "cameras": [{"name": c, "seed": i, "size": 32} for i, c in enumerate(CAMS)],
        "nodes": ["world", "encoder", "capture"],
        "encoder": {"workers": 2, "threads": 1, "worker_timeout_s": 1.5, "claim_delay_s": 1.0},
    }
    path = write_config(rdir / "cfg.yaml", pipeline_config(rdir, random_checkpoint, **pipe))
    config = load_config(path)
    proc = popen_perception("up", str(path), "--json")
    seen = Seen()
    listener = asyncio.create_task(seen.listen(config))
    try:
        await until("every camera embedded", lambda: all(seen.workers_of(c) for c in CAMS), 180)
        await asyncio.sleep(2.0)
        start = len(seen.embeddings)
        await until("a few windows more", lambda: len(seen.embeddings) > start + 12, 30)
        assert {c: set(seen.workers_of(c, start)) for c in CAMS} == {
            "cam0": {"encoder.0"},
            "cam1": {"encoder.1"},
            "cam2": {"encoder.0"},
        }
        answers = {c: await ask(config, c) for c in CAMS}
        assert {c: a["worker"] for c, a in answers.items()} == {
            "cam0": "encoder.0",
            "cam1": "encoder.1",
            "cam2": "encoder.0",
        }
        assert all(a["camera"] == c and a["answer"] in ("red", "blue") for c, a in answers.items())

        old = seen.pids["encoder.1"]
        os.kill(old, signal.SIGKILL)
        killed = len(seen.embeddings)
        await until("cam1 taken over by encoder.0", lambda: "encoder.0" in seen.workers_of("cam1", killed), 30)
        assert await asked_of(config, "cam1", "encoder.0")  # the world routes to whoever holds cam1 now
        await until("encoder.1 restarted", lambda: seen.pids.get("encoder.1", old) != old, 60)
        back = len(seen.embeddings)
        await until("cam1 handed back", lambda: "encoder.1" in seen.workers_of("cam1", back), 30)
        settled = len(seen.embeddings)
        await until("a few windows after the hand-back", lambda: len(seen.embeddings) > settled + 9, 30)
        assert set(seen.workers_of("cam1", settled)) == {"encoder.1"}  # encoder.0 let go
        assert set(seen.workers_of("cam0", killed)) == set(seen.workers_of("cam2", killed)) == {"encoder.0"}

        windows = collections.defaultdict(list)
        for cam, window, _ in seen.embeddings:
            windows[cam].append(window)
        for cam, ws in windows.items():  # per-camera order across both hand-overs: never a repeat or a step back
            assert all(b > a for a, b in zip(ws, ws[1:])), (cam, ws)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        interrupt(proc)
        shutil.rmtree(rdir, ignore_errors=True)


def test_a_worker_index_the_config_lacks_is_refused(random_checkpoint):
    rdir = short_tmp("ew-")
    path = write_config(rdir / "cfg.yaml", pipeline_config(rdir, random_checkpoint, encoder={"workers": 2}))
    try:
        for name in ("encoder.5", "encoder"):
            run = subprocess.run(
                [sys.executable, "-m", "perception.nodes", name, "--config", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=child_env(),
            )
            assert run.returncode == 2 and "encoder.0 ... encoder.1" in run.stderr + run.stdout, run.stderr[-2000:]
    finally:
        shutil.rmtree(rdir, ignore_errors=True)
