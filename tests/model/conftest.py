"""Small configs of the real model classes, so every test runs in well under a second or two."""

from __future__ import annotations

import pytest
import torch

from perception.model import VLJepa, VLJepaConfig, preset_config


def small_config(**overrides) -> VLJepaConfig:
    """The tiny preset shrunk further (real MiniLM Y-encoder from its package, tiny random X/predictor)."""
    base = {
        "embed_dim": 16,
        "x_encoder": {"image_size": 32, "patch_size": 8, "frames": 4, "tubelet": 2, "hidden": 48, "layers": 1,
                      "heads": 2},
        "predictor": {"hidden": 32, "layers": 2, "heads": 2, "kv_heads": 2, "intermediate": 64},
        "y_decoder": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "prefix_tokens": 2,
                      "max_tokens": 12},
        "device": "cpu",
        "dtype": "float32",
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return preset_config("tiny").with_overrides(base)


def small_model(**overrides) -> VLJepa:
    torch.manual_seed(0)
    return VLJepa.from_config(small_config(**overrides))


@pytest.fixture
def model() -> VLJepa:
    return small_model()


@pytest.fixture
def clips() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (3, 4, 3, 32, 32), dtype=torch.uint8, generator=g)  # [B,T,C,H,W]


@pytest.fixture
def make_model():
    """Factory: make_model(**overrides) -> a fresh small VLJepa (seeded)."""
    return small_model


@pytest.fixture
def make_config():
    return small_config
