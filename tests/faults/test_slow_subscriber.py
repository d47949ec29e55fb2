"""A skill that sleeps in its handlers, as a real process on a real proxy: the other consumer keeps
receiving everything, and the slow one's drops are counted on its stats/ heartbeat. (Behaviour only: the
latency figures, side by side, come from `python -m tests.faults.slow_subscriber`.)"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import pytest
import yaml

from bus.config import BusConfig
from bus.message import Stats
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher, Subscriber
from perception.messages import Embedding, Frame
from tests.support import REPO, child_env

SENT_S = 2.5


@pytest.mark.parametrize("block", [False, True], ids=["await-sleep", "blocking-sleep"])
async def test_a_slow_skill_drops_its_own_frames_and_nobody_elses(runtime_dir, block):
    bus = BusConfig.local(runtime_dir, stats_interval_s=0.5)
    cfg = runtime_dir / "bus.yaml"
    cfg.write_text(yaml.safe_dump({"bus": {"runtime_dir": str(runtime_dir), "stats_interval_s": 0.5}}))
    async with proxy_in_background(bus):
        watch = await Subscriber(bus, ["stats/skill.slow"], name="watch").start()
        fast = await Subscriber(bus, ["frames/", "embeddings/"], name="fast").start()
        skill = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "perception.cli",
            "skill",
            "tests.faults.slow_skill:SlowSkill",
            "--config",
            str(cfg),
            "--sleep-s",
            "0.5",
            *(["--block"] if block else []),
            cwd=REPO,
            env=child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(skill.stdout.readline(), 60)
            assert line.startswith(b"skill slow ready"), (line, (await skill.stderr.read())[-2000:])
            pub = Publisher(bus, src="camera")
            await pub.ready()
            got_emb: list[int] = []
            frames = 0

            async def consume() -> None:  # the other consumer, keeping up
                nonlocal frames
                async for env in fast:
                    if env.topic.startswith("embeddings/"):
                        got_emb.append(env.msg.window)
                    else:
                        frames += 1

            consumer = asyncio.create_task(consume())
            rng = np.random.default_rng(0)
            n = 0
            t_end = time.monotonic() + SENT_S
            while time.monotonic() < t_end:  # 100 frames/s and 10 embeddings/s, far beyond 2 handled per second
                image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
                pub.publish_nowait("frames/cam0", Frame(cam="cam0", index=n, t_capture_ns=time.time_ns(), image=image))
                if n % 10 == 0:
                    emb = np.ones(8, np.float32) / np.sqrt(8)
                    now = time.time_ns()
                    pub.publish_nowait(
                        "embeddings/cam0",
                        Embedding(
                            cam="cam0",
                            window=n // 10,
                            start_ns=now,
                            end_ns=now,
                            t_capture_ns=now,
                            model_id="m",
                            embedding=emb,
                        ),
                    )
                n += 1
                await asyncio.sleep(0.01)
            embeddings = n // 10 + (n % 10 > 0)
            async with asyncio.timeout(20):  # every embedding, in order, and (nearly) every frame
                while len(got_emb) < embeddings:
                    await asyncio.sleep(0.02)
            consumer.cancel()
            assert got_emb == list(range(embeddings)) and fast.stats.gaps == 0
            assert frames >= 0.9 * n, (frames, n)
            counters: dict = {}
            async with asyncio.timeout(30):  # the slow one says what it lost, on stats/skill.slow
                while not (counters.get("sub.superseded", 0) + counters.get("sub.gaps", 0) > 0):
                    env = await watch.recv()
                    if isinstance(env.msg, Stats):
                        counters = env.msg.counters
            handled = counters.get("handled.on_frame", 0) + counters.get("handled.on_embedding", 0)
            assert handled < n / 5  # it really was slow
            pub.close()
        finally:
            if skill.returncode is None:
                skill.kill()  # a blocked loop would first sleep through its queue before it saw SIGTERM
            await asyncio.wait_for(skill.wait(), 30)
            watch.close()
            fast.close()
