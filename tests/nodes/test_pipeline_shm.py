"""End to end on the same-host frames path: `perception up --json` with `bus.shm.enabled`.

The same process tree as test_pipeline.py (proxy, capture, encoder, events, decoder, world), on the
random development model, with shared memory switched on and `bus.shm.min_bytes` below the size of
one encoder frame, so that every frame to the encoder goes by reference. It asserts that frames did
travel that way (capture's `pub.shm.sent`, the encoder's `shm.pinned` + `shm.copied` on stats/), that
none was rejected, and that embeddings and captions still come out.
"""

from __future__ import annotations

import asyncio
import shutil
import time

from bus.pubsub import Subscriber
from perception.config import load_config
from perception.messages import Embedding

from .conftest import interrupt, pipeline_config, popen_perception, short_tmp, write_config
from .test_pipeline import Pipeline, latest_stats

SIZE = 32  # px: the random model's input; 32 x 32 x 3 = 3,072 B a frame


async def test_frames_go_through_shared_memory_and_captions_arrive(random_checkpoint):
    rdir = short_tmp("nps-")
    pipe = {
        "cameras": [{"name": "cam0", "seed": 5, "split": "train", "duration_s": 60.0, "size": SIZE, "loop": False}],
        "encoder": {"threads": 1},
        "events": {"max_len_s": 1.0},  # short segments: a caption within seconds
        "decoder": {"threads": 1},
    }
    cfg = pipeline_config(rdir, random_checkpoint, **pipe)
    cfg["bus"]["shm"] = {"enabled": True, "min_bytes": 1024}  # below one frame: frames by reference
    path = write_config(rdir / "cfg.yaml", cfg)
    config = load_config(path)
    proc = popen_perception("up", str(path), "--json")
    try:
        p = Pipeline(proc, path, trained=False)
        async with Subscriber(config.bus, ["embeddings/cam0"], name="test-emb") as emb_sub:
            deadline = time.monotonic() + 90
            while not p.captions():
                assert proc.poll() is None, f"perception up exited early: {proc.stderr.read()[-3000:]}"
                assert time.monotonic() < deadline, "no caption within 90 s"
                await asyncio.sleep(0.2)
            env = await emb_sub.recv(timeout=20)
            assert isinstance(env.msg, Embedding) and env.msg.cam == "cam0"
        assert p.captions()[0]["text"].strip()

        capture = await latest_stats(config, "capture", 20.0, where=lambda c: c.get("pub.shm.sent", 0) >= 20)
        encoder = await latest_stats(
            config, "encoder", 20.0, where=lambda c: c.get("shm.pinned", 0) + c.get("shm.copied", 0) >= 20
        )
        assert capture["pub.shm.rings"] >= 1
        assert encoder["windows"] >= 1
        assert encoder.get("sub.bad", 0) == 0 and encoder.get("shm.unavailable", 0) == 0, encoder
    finally:
        interrupt(proc)
        shutil.rmtree(rdir, ignore_errors=True)
