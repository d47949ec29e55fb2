"""A checkpoint without a trained Y-decoder (an imported open-vljepa one, tiny configs of the real classes)
captions by retrieval: the decoder node publishes the nearest phrase of the phrase bank on captions/<cam>,
marked retrieved, with its cosine; the user's phrase file replaces the shipped one."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from bus.rpc import RpcClient
from perception.config import AppConfig
from perception.messages import Caption, DecodeRequest, Embedding, Frame
from perception.model import VLJepa
from perception.model.importers.open_vljepa import import_checkpoint
from perception.model.importers.reference_layout import write_best_pt, write_tiny_parts
from perception.model.phrase_bank import MAX_PHRASE_CHARS, PhraseBankError, read_phrases
from perception.nodes.decoder import DecoderNode
from perception.nodes.encoder import EncoderNode, encoder_endpoint

from .conftest import pipeline_config
from .harness import collect, node_config, running
from .test_encoder_node import frame

PHRASES = ["a dog runs on the street", "a person is cooking in the kitchen", "a red circle moves left"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-vljepa")
    parts = write_tiny_parts(root)
    best = write_best_pt(root / "best.pt", parts, max_len=16)
    import_checkpoint(best, root / "ckpt", str(parts["vjepa2"]), str(parts["llama"]), str(parts["gemma3"]))
    return root / "ckpt"


async def test_decoder_node_publishes_retrieved_phrases_with_their_scores(runtime_dir, imported, tmp_path):
    bank = tmp_path / "mine.txt"
    bank.write_text("# my robot's phrases\n" + "\n".join(PHRASES) + "\n\n")
    raw = pipeline_config(runtime_dir, imported)
    raw["model"]["phrase_banks"] = [str(bank)]
    config = AppConfig.model_validate(raw)
    model = VLJepa.load(imported, device="cpu")
    targets = model.embed_text(PHRASES).numpy()  # each phrase's own S_Y: its nearest phrase is itself
    async with running(DecoderNode, config, ["captions/"]) as (_node, pub, sub):
        now = time.time_ns()
        for i in (2, 0):
            req = DecodeRequest(
                cam="cam0", segment_id=i, start_ns=now, end_ns=now, t_capture_ns=now, embedding=targets[i]
            )
            pub.publish_nowait("decode/cam0", req)
        got = sorted((c.msg for c in await collect(sub, "captions/", 2, timeout=60)), key=lambda c: c.segment_id)
    assert all(isinstance(c, Caption) and c.retrieved for c in got)
    assert [c.text for c in got] == [PHRASES[0], PHRASES[2]]
    assert all(c.score is not None and c.score > 0.999 for c in got)


def test_model_uses_the_shipped_bank_and_describes_each_row(imported):
    model = VLJepa.load(imported, device="cpu")
    shipped = read_phrases(model.cfg.y_decoder.phrase_banks)
    assert len(shipped) > 100
    s_hat = torch.nn.functional.normalize(torch.randn(3, model.cfg.embed_dim), dim=-1)
    said = model.describe(s_hat)
    assert all(d.retrieved and d.text in shipped and len(d.alternatives) == 2 for d in said)
    scores = model.embed_text([d.text for d in said]) @ s_hat.T  # the chosen phrase's cosine is the score
    np.testing.assert_allclose([d.score for d in said], scores.diagonal().numpy(), atol=1e-4)
    assert model.decode(s_hat) == [d.text for d in said]  # eval, ask and MCP read decode(): same text


def test_bad_phrase_files_are_refused_with_the_reason(tmp_path):
    with pytest.raises(PhraseBankError, match="cannot read"):
        read_phrases([tmp_path / "absent.txt"])
    long = tmp_path / "long.txt"
    long.write_text("ok\n" + "x" * (MAX_PHRASE_CHARS + 1) + "\n")
    with pytest.raises(PhraseBankError, match="long.txt:2"):
        read_phrases([long])
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(PhraseBankError, match="no phrase"):
        read_phrases([empty])


async def test_encoder_windows_use_the_models_prompt_and_ask_says_retrieved(runtime_dir, imported):
    """pipeline.encoder.query unset: windows are embedded with the checkpoint's own prompt (open-vljepa's
    "Describe the video."); an open question is answered from the phrase bank, marked retrieved."""
    config = node_config(runtime_dir, imported, encoder={"frame_step": 1, "stride_frames": 8, "jit": False})
    model = VLJepa.load(imported, device="cpu")
    image = frame("cam0", 0).image  # one image in every frame: a frame the node substitutes under load is equal
    frames = [Frame(cam="cam0", index=i, t_capture_ns=time.time_ns(), stream_s=i / 30, image=image) for i in range(8)]
    async with running(EncoderNode, config, ["embeddings/"]) as (node, pub, sub):
        assert node.W == 8  # the imported checkpoint's 8 frames per window
        for f in frames:
            pub.publish_nowait("frames/cam0", f)
            await asyncio.sleep(0.02)
        emb = (await collect(sub, "embeddings/", 1, timeout=60))[0].msg
        async with RpcClient(config.bus, endpoint=encoder_endpoint(config), timeout=30, retries=0) as rpc:
            said = await rpc.call("ask", {"question": "what is happening in the video"})
    assert isinstance(emb, Embedding)
    clip = torch.from_numpy(np.stack([f.image for f in frames])).permute(0, 3, 1, 2)[None]  # [1,8,3,H,W]
    expect = model.predict(model.encode_video(clip), "Describe the video.")[0].numpy()
    np.testing.assert_allclose(emb.embedding, expect, atol=1e-4)
    assert said["retrieved"] is True and isinstance(said["score"], float) and said["text"]


def test_mcp_ask_view_keeps_the_retrieved_mark():
    from perception.mcp.pipeline import view_ask

    retrieved = view_ask({"camera": "cam0", "question": "q", "text": "a dog", "retrieved": True, "score": 0.42}, 0)
    assert retrieved["text"] == "a dog" and retrieved["retrieved"] is True and retrieved["score"] == 0.42
    decoded = view_ask({"camera": "cam0", "question": "q", "text": "a dog"}, 0)
    assert "retrieved" not in decoded and "score" not in decoded
