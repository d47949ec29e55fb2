"""The encoder's `vlm` mode in the real pipeline: `perception up` (real processes, real sockets) with the
token-generative baseline captioning every window on captions/<cam>, in the decoder's Caption schema, with
its cost on stats/encoder; and a missing or mismatched VLM checkpoint is a clear error, not a crash loop."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import pytest

from bus.message import Stats
from bus.pubsub import Subscriber
from bus.rpc import RpcClient, RpcError
from perception.config import AppConfig, load_config
from perception.messages import Caption
from perception.nodes.models import ModelUnavailableError, resolve_vlm_checkpoint, vlm_preflight
from perception.nodes.workers import encoder_endpoint

from .conftest import interrupt, perception, pipeline_config, popen_perception, short_tmp, write_config


@pytest.fixture(scope="module")
def vlm_checkpoint(random_checkpoint, tmp_path_factory):
    """A random TokenVLM on the session's small random VL-JEPA, saved with its own save()."""
    import torch

    from perception.model import VLJepa
    from perception.model.vlm import TokenVLM

    torch.manual_seed(0)
    jepa = VLJepa.load(random_checkpoint, device="cpu", dtype="float32")
    return TokenVLM.from_vljepa(jepa).save(tmp_path_factory.mktemp("vlm") / "small-vlm", source=random_checkpoint)


def vlm_pipeline(rdir, checkpoint, vlm_dir, **supervisor) -> dict:
    cam = {"name": "cam0", "seed": 1, "split": "heldout", "duration_s": 60.0, "size": 32, "loop": False}
    cfg = pipeline_config(
        rdir,
        checkpoint,
        nodes=["world", "encoder", "capture"],
        cameras=[cam],
        encoder={"mode": "vlm", "vlm_checkpoint": str(vlm_dir), "frame_step": 2, "stride_frames": 4, "threads": 1},
    )
    cfg["pipeline"]["supervisor"].update(supervisor)
    return cfg


async def encoder_stats(config: AppConfig, where, timeout: float = 20.0) -> dict:
    async with Subscriber(config.bus, ["stats/encoder"], name="test") as sub:
        async with asyncio.timeout(timeout):
            while True:
                env = await sub.recv()
                if isinstance(env.msg, Stats) and env.msg.node == "encoder" and where(env.msg.counters):
                    return env.msg.counters


async def test_vlm_mode_captions_every_window_through_perception_up(random_checkpoint, vlm_checkpoint):
    rdir = short_tmp("vlm-")
    path = write_config(rdir / "cfg.yaml", vlm_pipeline(rdir, random_checkpoint, vlm_checkpoint))
    config = load_config(path)
    proc = popen_perception("up", str(path), "--json")
    lines: list[dict] = []
    threading.Thread(
        target=lambda: lines.extend(json.loads(x) for x in proc.stdout if x.startswith("{")), daemon=True
    ).start()
    try:
        deadline = time.monotonic() + 90
        while len([x for x in lines if x["type"] == "Caption"]) < 8:
            assert proc.poll() is None, f"perception up exited: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "fewer than 8 captions within 90 s"
            await asyncio.sleep(0.1)
        caps = [x for x in lines if x["type"] == "Caption"]
        assert {c["topic"] for c in caps} == {"captions/cam0"}
        for c in caps:  # the decoder's schema, every field
            Caption.model_validate({k: v for k, v in c.items() if k not in ("topic", "type")})
            assert c["end_s"] > c["start_s"] and c["end_ns"] > c["start_ns"] and c["t_capture_ns"] == c["end_ns"]
            assert c["latency_ms"] > 0 and isinstance(c["text"], str)
        windows = [c["segment_id"] for c in caps]
        assert windows == sorted(set(windows)), windows  # one caption per window number, in order
        assert not [x for x in lines if x["type"] == "Event"]  # no events node in this mode
        stats = await encoder_stats(config, lambda c: c.get("windows", 0) >= 8)
        assert stats["vlm_tokens"] >= stats["windows"] and stats["vlm_forwards"] >= stats["windows"]
        assert stats["windows_failed"] == 0 and stats["caption_latency_p50_ms"] > 0
        async with RpcClient(config.bus, endpoint=encoder_endpoint(config), timeout=30, retries=0) as rpc:
            ans = await rpc.call("ask", {"question": "what colour is it?", "choices": ["red", "blue"]})
            assert ans["answer"] in ("red", "blue") and set(ans["scores"]) == {"red", "blue"}
            assert ans["camera"] == "cam0" and ans["model_id"].startswith("token-vlm@small-vlm:")
            assert isinstance((await rpc.call("ask", {"question": "what happens?"}))["text"], str)
            with pytest.raises(RpcError) as err:
                await rpc.call("embed", {"texts": ["a red circle"]})
            assert err.value.code == "unsupported" and "vlm" in err.value.message
    finally:
        interrupt(proc)
        shutil.rmtree(rdir, ignore_errors=True)
    assert proc.returncode == 0


def test_missing_vlm_checkpoint_fails_perception_up_with_its_path(random_checkpoint, tmp_path):
    rdir = short_tmp("vlm-")
    try:
        cfg = vlm_pipeline(rdir, random_checkpoint, tmp_path / "no-vlm", max_restarts=0)
        out = perception("up", str(write_config(rdir / "cfg.yaml", cfg)), "--duration", "5", timeout=120)
    finally:
        shutil.rmtree(rdir, ignore_errors=True)
    assert out.returncode != 0
    assert f"pipeline.encoder.vlm_checkpoint = {tmp_path / 'no-vlm'}: no such directory" in out.stderr, out.stderr[
        -3000:
    ]
    assert "perception train --preset tiny-vlm" in out.stderr


def test_preflight_names_what_is_wrong_with_a_vlm_checkpoint(random_checkpoint, vlm_checkpoint, tmp_path):
    def enc(path) -> AppConfig:
        return AppConfig.model_validate({"pipeline": {"encoder": {"mode": "vlm", "vlm_checkpoint": str(path)}}})

    assert vlm_preflight(enc(vlm_checkpoint).pipeline.encoder) == []
    assert resolve_vlm_checkpoint(enc(vlm_checkpoint).pipeline.encoder) == vlm_checkpoint
    assert vlm_preflight(AppConfig().pipeline.encoder) == []  # mode jepa: nothing to check
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(vlm_checkpoint / "vlm.json", half / "vlm.json")
    [(where, msg)] = vlm_preflight(enc(half).pipeline.encoder)
    assert where == "pipeline.encoder.vlm_checkpoint" and "vlm.safetensors missing" in msg
    # the VL-JEPA checkpoint it names changed since the VLM was trained on it
    src, vlm = tmp_path / "jepa", tmp_path / "vlm"
    shutil.copytree(random_checkpoint, src)
    shutil.copytree(vlm_checkpoint, vlm)
    meta = json.loads((vlm / "vlm.json").read_text())
    (vlm / "vlm.json").write_text(json.dumps(dict(meta, source="../jepa")))
    assert vlm_preflight(enc(vlm).pipeline.encoder) == []
    with open(src / "model.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelUnavailableError, match="not the one this VLM was trained on"):
        resolve_vlm_checkpoint(enc(vlm).pipeline.encoder)
