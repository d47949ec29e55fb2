"""A shrunken training config: the real stages, loop and data on a model small enough for seconds."""

from __future__ import annotations

import pytest

from perception.train.config import TrainConfig
from tests.support import SMALL_MODEL as BASE_MODEL
from tests.support import with_sections

# tests.support.SMALL_MODEL, a little wider in the predictor, without device/dtype (the train config's own)
SMALL_MODEL = {
    k: v
    for k, v in with_sections(
        BASE_MODEL, {"predictor": {"hidden": 48, "intermediate": 96}, "y_decoder": {"max_tokens": 12}}
    ).items()
    if k not in ("device", "dtype")
}


def small_train_dict(**over) -> dict:
    base = {
        "seed": 0,
        "threads": 1,
        "model": {"preset": "tiny", "device": "cpu", "overrides": SMALL_MODEL},
        "data": {"seed": 0, "num_workers": 0, "max_objects": 1},
        "stage1": {"steps": 2, "batch_size": 4, "lr": 3e-3},
        "stage2": {"steps": 2, "batch_size": 4, "lr": 1e-3},
        "stage3": {"steps": 2, "batch_size": 4, "lr": 1e-3},
        "log_every": 1,
        "checkpoint_every": 2,
    }
    return with_sections(base, over)


@pytest.fixture
def small_cfg():
    """small_cfg(**section_overrides) -> a validated TrainConfig."""
    return lambda **over: TrainConfig.model_validate(small_train_dict(**over))
