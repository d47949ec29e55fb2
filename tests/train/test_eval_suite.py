"""`perception eval` end to end: every key of docs/architecture.md#evaluation, values in range, on a tiny random model;
and the shipped checkpoint clears a sanity bar on a small held-out sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from perception.cli import main
from perception.eval.suite import SuiteConfig, clip_tasks, evaluate
from perception.model import VLJepa, preset_config
from tests.train.conftest import SMALL_MODEL

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny"
TINY_SUITE = SuiteConfig(clips=12, retrieval_pool=6, streams=1, stream_seconds=12.0, batch=12)


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = preset_config("tiny").with_overrides({**SMALL_MODEL, "device": "cpu", "dtype": "float32"})
    return VLJepa.from_config(cfg).save(tmp_path_factory.mktemp("random") / "model")


def test_eval_of_a_random_model_has_every_key_in_range(random_model_dir, tmp_path):
    torch.set_num_threads(1)
    model = VLJepa.load(random_model_dir, device="cpu")
    result = evaluate(model, split="heldout", seed=3, cfg=TINY_SUITE, plot=tmp_path / "curve.png")
    for key in ("classification_top1", "retrieval_r1", "vqa_accuracy", "caption_cider", "caption_slot_accuracy"):
        assert isinstance(result[key], float), key
        assert 0.0 <= result[key] <= (10.0 if key == "caption_cider" else 1.0), (key, result[key])
    assert set(result["vqa_accuracy_per_type"]) == {"colour", "shape", "count", "presence"}
    sel = result["selective_decoding"]
    assert set(sel["reduction_at_matched_quality"]) >= {"offline", "online"}
    for v in sel["reduction_at_matched_quality"].values():
        assert v is None or v > 0
    methods = {p["method"] for p in sel["points"]}
    assert methods == {"uniform", "offline", "online"}
    assert all(0.4 <= p["target_interval_s"] <= 20 and p["n_decodes"] >= 1 for p in sel["points"])
    assert 1.0 <= sel["perfect_segmentation_bound"] <= 8.0
    assert (tmp_path / "curve.png").stat().st_size > 1000
    json.dumps(result)  # JSON-ready


def test_eval_command_writes_json_and_refuses_a_bad_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "nothing-here")]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err


def test_shipped_checkpoint_loads_and_clears_a_sanity_bar():
    """Chance is 0.10 for 10 actions; a quick held-out sample must be far above it (full figures come from
    `perception eval`, recorded in docs/model.md)."""
    torch.set_num_threads(1)
    model = VLJepa.load(SHIPPED, device="cpu")
    out = clip_tasks(model, "heldout", seed=7, cfg=SuiteConfig(clips=48, retrieval_pool=48, batch=48))
    assert out["classification_top1"] >= 0.5, out
    assert out["retrieval_r1"] >= 0.1, out  # chance about 1/48
    assert out["vqa_accuracy_per_type"]["colour"] >= 0.5, out  # chance 1/6
