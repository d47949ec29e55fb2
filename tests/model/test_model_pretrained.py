"""The real loading code against tiny configs of the real transformers classes (VJEPA2, Llama, Gemma3),
written with save_pretrained and loaded back; and the clear error when weights are missing."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    Gemma3TextModel,
    VJEPA2Model,
)

from perception.model import MissingWeightsError, VLJepa
from perception.model.tiny_real import VOCAB, write_tiny_pretrained
from perception.model.weights import resolve_source


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return write_tiny_pretrained(tmp_path_factory.mktemp("pretrained"))


def _real_class_config(make_config, dirs, **extra):
    over = {
        "x_encoder": {"weights": str(dirs["vjepa2"]), "frozen": True, "hidden": 999, "frames": 4},
        "predictor": {"weights": str(dirs["llama"]), "layers": 2, "token_embeddings": "own"},
        "y_encoder": {"source": str(dirs["gemma3"]), "pooling": "mean", "frozen": True},
    }
    for k, v in extra.items():
        over[k] = {**over.get(k, {}), **v}
    return make_config(**over)


def test_vjepa2_encoder_loads_and_matches_transformers(pretrained, make_config, clips):
    model = VLJepa.from_config(_real_class_config(make_config, pretrained))
    assert model.cfg.x_encoder.hidden == 48 and model.cfg.x_encoder.layers == 2  # adopted from config.json
    ref = VJEPA2Model.from_pretrained(str(pretrained["vjepa2"]), local_files_only=True).eval()
    x = model.x_encoder.preprocess(clips)
    with torch.no_grad():
        expect = ref(pixel_values_videos=x, skip_predictor=True).last_hidden_state
    torch.testing.assert_close(model.encode_video(clips), expect)
    assert all(not p.requires_grad for p in model.x_encoder.parameters())


@pytest.mark.parametrize("lm", ["llama", "llama-causal"], ids=["LlamaModel", "LlamaForCausalLM"])
def test_predictor_takes_the_last_layers_of_the_lm(pretrained, make_config, lm):
    model = VLJepa.from_config(_real_class_config(make_config, pretrained, predictor={"weights": str(pretrained[lm])}))
    ref = load_file(str(pretrained[lm] / "model.safetensors"))
    p = "model." if lm == "llama-causal" else ""
    for i in range(2):  # our layer i is the LM's layer 2 + i (4 layers, take the last 2)
        torch.testing.assert_close(
            model.predictor.stack.layers[i].mlp.down_proj.weight, ref[f"{p}layers.{2 + i}.mlp.down_proj.weight"]
        )
        torch.testing.assert_close(
            model.predictor.stack.layers[i].self_attn.k_proj.weight, ref[f"{p}layers.{2 + i}.self_attn.k_proj.weight"]
        )
    torch.testing.assert_close(model.predictor.stack.norm.weight, ref[f"{p}norm.weight"])
    torch.testing.assert_close(model.predictor.query_embed.table.weight, ref[f"{p}embed_tokens.weight"])
    assert model.predictor.stack.layers[0].self_attn.num_key_value_groups == 2  # GQA layout kept


def test_gemma3_y_encoder_mean_pools_the_transformers_output(pretrained, make_config):
    model = VLJepa.from_config(_real_class_config(make_config, pretrained))
    ref = Gemma3TextModel.from_pretrained(str(pretrained["gemma3"]), local_files_only=True).eval()
    t = model.tokenize_targets(["a red circle moves left", "a square"])
    with torch.no_grad():
        h = ref(input_ids=t.ids, attention_mask=t.mask).last_hidden_state
        w = t.mask.unsqueeze(-1).float()
        expect = model.y_encoder.head((h * w).sum(1) / w.sum(1))
        torch.testing.assert_close(model.y_encoder(t), expect)


def test_hf_causal_lm_as_y_decoder(pretrained, make_config):
    cfg = _real_class_config(
        make_config, pretrained, y_decoder={"kind": "hf", "weights": str(pretrained["llama-causal"]), "frozen": True}
    )
    model = VLJepa.from_config(cfg)
    model.train()
    out = model.decoder_loss(["a red circle", "a blue square moves up"])
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logits.shape[-1] == VOCAB
    assert all(p.grad is None for p in model.y_decoder.lm.parameters())
    assert model.y_decoder.prefix.weight.grad.abs().sum() > 0
    model.eval()
    texts = model.decode(model.embed_text(["a red circle"]), max_tokens=5, beams=2)
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_checkpoint_with_external_parts_round_trips_and_reports_missing_weights(
    pretrained, make_config, clips, tmp_path
):
    xdir = tmp_path / "vjepa2-copy"
    shutil.copytree(pretrained["vjepa2"], xdir)
    model = VLJepa.from_config(_real_class_config(make_config, pretrained, x_encoder={"weights": str(xdir)}))
    s_hat = model.predict(model.encode_video(clips), "what shape?")
    model.save(tmp_path / "ck")
    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert not any(k.startswith(("x_encoder.backbone.", "y_encoder.backbone.")) for k in stored)
    assert not any(k.startswith("predictor.query_embed.table.") for k in stored)  # frozen LM table: external
    loaded = VLJepa.load(tmp_path / "ck")
    torch.testing.assert_close(loaded.predict(loaded.encode_video(clips), "what shape?"), s_hat, rtol=0, atol=0)
    shutil.rmtree(xdir)
    with pytest.raises(MissingWeightsError, match=str(xdir)):
        VLJepa.load(tmp_path / "ck")


def test_missing_hub_weights_name_the_path_and_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(MissingWeightsError) as err:
        resolve_source("meta-llama/Llama-3.2-1B", "predictor")
    msg = str(err.value)
    assert "meta-llama/Llama-3.2-1B" in msg and "huggingface-cli download" in msg and str(tmp_path / "hf") in msg
    assert not (tmp_path / "hf").exists()  # nothing was downloaded or created


def test_hub_id_found_in_the_local_cache(pretrained, tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--org--tiny-vjepa2" / "snapshots" / "abc123"
    shutil.copytree(pretrained["vjepa2"], snap)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_source("org/tiny-vjepa2", "x_encoder") == snap


def test_vitl_preset_without_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(MissingWeightsError, match="google/embeddinggemma-300m.*huggingface-cli download"):
        VLJepa.from_config("vjepa2-vitl")
