"""Determinism: frames recorded from a live pipeline, replayed twice into fresh encoder + events nodes,
give bitwise-equal embeddings and identical events.

Why bitwise is expected (and asserted): replay republishes the recorded frames verbatim (same pixels,
capture times and indices), the encoder's windows depend only on frame indices, one camera means every
forward pass has batch 1, torch runs on CPU with 1 thread (same reduction order every time) and the
events node is a pure function of the embedding sequence. Replay runs at --rate 1 (the live rate), so the
`latest` frames topic never conflates and no window is dropped; the test checks both counters, since a
drop would change which windows exist and is a load artefact, not non-determinism.
"""

from __future__ import annotations

import asyncio

import numpy as np
import yaml
from nodes.conftest import SMALL_MODEL, pipeline_config, random_checkpoint, short_tmp  # noqa: F401  (pytest fixtures, used by name)

from bus.proxy import Proxy
from bus.pubsub import Subscriber
from perception.config import AppConfig
from perception.nodes.encoder import EncoderNode
from perception.nodes.events import EventsNode

from .conftest import perception, perception_run, wait_line

PIPE = {
    "cameras": [{"name": "cam0", "seed": 3, "fps": 10, "size": 32, "duration_s": 60, "loop": False}],
    "encoder": {"threads": 1, "frame_step": 1, "stride_frames": 2},
    # 2 and 4 windows at stride 2 / 10 fps
    "events": {
        "min_len_s": 0.4,
        "max_len_s": 0.8,
        "watch": [{"label": "the red circle grows", "enter": 0.0, "leave": -0.2}],
    },
    "nodes": ["capture"],
}


def write(path, cfg: dict):
    path.write_text(yaml.safe_dump(cfg))
    return path


async def record_live(rdir, checkpoint, out) -> None:
    """`perception up` (capture only) on the synthetic camera, `perception record frames/` for ~7 s."""
    cfg = pipeline_config(rdir, checkpoint, **PIPE)
    cfg["bus"]["ready_timeout_s"] = 60
    path = write(rdir / "live.yaml", cfg)
    up = await perception("up", str(path), "--duration", "60")
    try:
        # the 7 s start once frames flow: `up` alone may take seconds to start on a loaded machine
        config = AppConfig.model_validate(cfg)
        async with Subscriber(config.bus.model_copy(update={"ready_timeout_s": 90}), ["frames/"], name="t") as sub:
            await sub.recv(timeout=90)
        rec = await perception("record", str(out), "--config", str(path), "--topics", "frames/", "--duration", "7")
        await wait_line(rec, "recording", timeout=90)
        _, err = await asyncio.wait_for(rec.communicate(), 60)
        assert rec.returncode == 0, err.decode()[-2000:]
    finally:
        up.terminate()
        await asyncio.wait_for(up.communicate(), 60)


async def replay_into_fresh_pipeline(recording, checkpoint):
    """Fresh proxy, encoder and events nodes; replay the frames; -> ({end_ns: embedding bytes}, events)."""
    rdir = short_tmp("det-")
    raw = pipeline_config(rdir, checkpoint, **PIPE)
    config = AppConfig.model_validate(raw)
    path = write(rdir / "replay.yaml", raw)
    proxy = Proxy(config.bus)
    proxy_task = asyncio.create_task(proxy.run())
    await asyncio.wait_for(proxy.bound.wait(), 30)
    sub = await Subscriber(config.bus, ["embeddings/", "events/"], name="test").start()
    nodes = [EncoderNode(config), EventsNode(config)]
    tasks = [asyncio.create_task(n.run()) for n in nodes]
    try:
        async with asyncio.timeout(120):
            while not all(n.ready.is_set() for n in nodes):
                for t in tasks:
                    if t.done():
                        t.result()
                await asyncio.sleep(0.05)
        rc, out, err = await perception_run("replay", str(recording), "--config", str(path), "--rate", "1", timeout=120)
        assert rc == 0, err
        embeddings, events = {}, []
        while True:  # drain until the pipeline has been quiet for 3 s
            try:
                env = await sub.recv(timeout=3)
            except TimeoutError:
                break
            msg = env.msg
            if env.topic.startswith("embeddings/"):
                embeddings[(msg.start_ns, msg.end_ns)] = np.asarray(msg.embedding).tobytes()
            else:
                events.append(
                    (
                        msg.kind,
                        msg.segment_id,
                        msg.start_ns,
                        msg.end_ns,
                        msg.watch,
                        msg.active,
                        [(x.label, x.score) for x in msg.labels],
                        None if msg.embedding is None else np.asarray(msg.embedding).tobytes(),
                    )
                )
        encoder = nodes[0]
        assert encoder.counters["windows_dropped"] == 0 and encoder.sub.stats.superseded == 0, encoder.counters
        return embeddings, events
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sub.close()
        proxy_task.cancel()
        await asyncio.gather(proxy_task, return_exceptions=True)


async def test_replayed_frames_reproduce_embeddings_and_events(runtime_dir, random_checkpoint):  # noqa: F811
    recording = runtime_dir / "frames.mcap"
    await record_live(runtime_dir, random_checkpoint, recording)
    first = await replay_into_fresh_pipeline(recording, random_checkpoint)
    second = await replay_into_fresh_pipeline(recording, random_checkpoint)
    emb1, ev1 = first
    emb2, ev2 = second
    assert len(emb1) >= 10, f"too few windows to mean anything: {len(emb1)}"
    assert emb1.keys() == emb2.keys()
    assert all(emb1[k] == emb2[k] for k in emb1), "embeddings differ bitwise between two replays"
    assert sum(e[0] == "segment" for e in ev1) >= 2
    assert ev1 == ev2
