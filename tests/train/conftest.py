"""A shrunken training config: the real stages, loop and data on a model small enough for seconds."""

from __future__ import annotations

import copy

import pytest

from perception.train.config import TrainConfig

SMALL_MODEL = {
    "embed_dim": 32,
    "x_encoder": {"image_size": 32, "patch_size": 8, "frames": 4, "tubelet": 2, "hidden": 48, "layers": 1,
                  "heads": 2},
    "predictor": {"hidden": 48, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 96},
    "y_decoder": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "prefix_tokens": 2, "max_tokens": 12},
}


def small_train_dict(**over) -> dict:
    d = {
        "seed": 0,
        "threads": 1,
        "model": {"preset": "tiny", "device": "cpu", "overrides": copy.deepcopy(SMALL_MODEL)},
        "data": {"seed": 0, "num_workers": 0, "max_objects": 1},
        "stage1": {"steps": 2, "batch_size": 4, "lr": 3e-3},
        "stage2": {"steps": 2, "batch_size": 4, "lr": 1e-3},
        "stage3": {"steps": 2, "batch_size": 4, "lr": 1e-3},
        "log_every": 1,
        "checkpoint_every": 2,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return d


@pytest.fixture
def small_cfg():
    """small_cfg(**section_overrides) -> a validated TrainConfig."""
    return lambda **over: TrainConfig.model_validate(small_train_dict(**over))
