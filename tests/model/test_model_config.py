"""Presets, the YAML model section, and parameter counts built on the meta device."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from perception.config import CONFIG_DIR, load_config
from perception.model import ModelSection, VLJepaConfig, preset_config
from perception.model.params import count_parameters, stored_bytes


def test_config_dict_round_trip_and_unknown_keys():
    cfg = preset_config("vjepa2-vitl")
    assert VLJepaConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown x_encoder config keys \\['patch'\\]"):
        cfg.with_overrides({"x_encoder": {"patch": 8}})
    with pytest.raises(ValueError, match="valid presets"):
        preset_config("huge")


def test_model_section_applies_weights_overrides_and_device():
    section = ModelSection(
        preset="tiny",
        device="cpu",
        dtype="float32",
        weights={"x_encoder": "/models/vjepa2", "y_encoder": "/models/gemma"},
        overrides={"x_encoder": {"image_size": 96, "patch_size": 16}, "embed_dim": 128},
    )
    cfg = section.to_model_config()
    assert cfg.x_encoder.weights == "/models/vjepa2" and cfg.y_encoder.source == "/models/gemma"
    assert (cfg.x_encoder.image_size, cfg.x_encoder.patch_size, cfg.embed_dim) == (96, 16, 128)
    assert cfg.x_encoder.num_tokens == (8 // 4) * 6 * 6  # (frames / tubelet) * (96 / 16)^2
    assert (cfg.device, cfg.dtype) == ("cpu", "float32")
    with pytest.raises(ValidationError):
        ModelSection(weights={"vision": "/x"})


def test_shipped_yaml_configs_validate():
    for name in ("tiny-cpu.yaml", "vjepa2-vitl.yaml"):
        section = load_config(CONFIG_DIR / name).model
        cfg = section.to_model_config()
        assert cfg.preset == yaml.safe_load((CONFIG_DIR / name).read_text())["model"]["preset"]
    vitl = load_config(CONFIG_DIR / "vjepa2-vitl.yaml").model.to_model_config()
    assert vitl.x_encoder.frozen and vitl.embed_dim == 1536 and vitl.predictor.layers == 8


def test_frozen_is_the_default_for_the_real_preset_and_trainable_for_tiny():
    assert preset_config("vjepa2-vitl").x_encoder.frozen is True
    assert preset_config("tiny").x_encoder.frozen is False
    assert preset_config("tiny").y_encoder.frozen is True


def test_vitl_parameter_counts_on_meta_device():
    c = count_parameters("vjepa2-vitl")
    assert 300e6 < c["x_encoder"]["total"] < 310e6 and c["x_encoder"]["trainable"] == 0  # ViT-L, frozen
    # one Llama-3.2-1B layer: attention q,o 2048^2 each + k,v 2048*512 each, MLP 3*2048*8192, 2 RMSNorms
    layer = 2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048
    trainable = 8 * layer + 2048 + (1024 * 2048 + 2048) + (2048 * 1536 + 1536)  # + final norm, proj, head
    assert c["predictor"]["trainable"] == trainable
    assert c["predictor"]["total"] == trainable + 128256 * 2048  # + the frozen token table
    assert 300e6 < c["y_encoder"]["trainable"] < 310e6  # EmbeddingGemma-300M trains (LR x0.05)


def test_tiny_checkpoint_fits_the_budget():
    assert stored_bytes("tiny") <= 30e6
