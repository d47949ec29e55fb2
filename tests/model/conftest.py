"""Small configs of the real model classes, so every test runs in well under a second or two."""

from __future__ import annotations

import pytest
import torch

from perception.model import VLJepa, VLJepaConfig, preset_config
from tests.support import SMALL_MODEL, with_sections

# tests.support.SMALL_MODEL with a 2-layer predictor (mask tests), D = 16 and 12 caption tokens
MODEL_TESTS = with_sections(SMALL_MODEL, {"embed_dim": 16, "predictor": {"layers": 2}, "y_decoder": {"max_tokens": 12}})


def small_config(**overrides) -> VLJepaConfig:
    """The tiny preset shrunk further (real MiniLM Y-encoder from its package, tiny random X/predictor)."""
    return preset_config("tiny").with_overrides(with_sections(MODEL_TESTS, overrides))


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
