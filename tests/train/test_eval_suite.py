"""`perception eval` end to end: every metric with its interval, on a tiny random model; the retrieval gallery
holds distractors; and the shipped checkpoint clears a sanity bar on a small held-out sample."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.cli import main
from perception.data.vocab import TRAIN_COMBOS
from perception.eval.suite import (
    DISTRACTOR_SEED,
    ClipBatch,
    SuiteConfig,
    clip_tasks,
    embed_streams,
    evaluate,
    retrieval,
)
from perception.model import VLJepa, preset_config
from tests.train.conftest import SMALL_MODEL

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny"
TINY_SUITE = SuiteConfig(
    clips=12, retrieval_pool=6, seeds=(0,), streams_per_seed=2, stream_seconds=12.0, batch=12, resamples=50
)


def is_estimate(m) -> bool:
    return set(m) == {"value", "ci95", "n"} and m["ci95"][0] <= m["value"] <= m["ci95"][1] and m["n"] >= 1


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = preset_config("tiny").with_overrides({**SMALL_MODEL, "device": "cpu", "dtype": "float32"})
    return VLJepa.from_config(cfg).save(tmp_path_factory.mktemp("random") / "model")


def test_eval_of_a_random_model_has_every_metric_with_an_interval(random_model_dir, tmp_path):
    torch.set_num_threads(1)
    model = VLJepa.load(random_model_dir, device="cpu")
    cached = replace(TINY_SUITE, cache_dir=str(tmp_path / "cache"))
    result = evaluate(model, split="val", cfg=cached, plot=tmp_path / "curve.png")
    assert result["split"] == "val"
    op = result["operating_point"]
    assert op["all"]["streams"] + op["streams_without_annotation"] == 2
    assert [r["rate_hz"] for r in op["all"]["online"]["rows"]] == [0.25, 0.35, 0.5]
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 2  # one entry per stream
    again = embed_streams(model, "val", cached)  # read back from the cache: the same arrays
    first = embed_streams(model, "val", TINY_SUITE)
    for a, b in zip(again.embs, first.embs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for key in ("classification_top1", "retrieval_r1", "vqa_accuracy", "caption_slot_accuracy"):
        assert is_estimate(result[key]) and 0.0 <= result[key]["value"] <= 1.0, (key, result[key])
    assert is_estimate(result["caption_cider"]) and result["caption_cider"]["n"] == 12
    assert set(result["classification_per_slot"]) == {"colour", "shape", "action"}
    assert set(result["vqa_accuracy_per_type"]) == {"colour", "shape", "count", "presence"}
    assert set(result["caption_slot_accuracy_per_slot"]) == {"colour", "shape", "action"}
    assert all(is_estimate(m) for m in result["vqa_accuracy_per_type"].values())
    described = result["stream_segments_described"]
    assert is_estimate(described) and described["n"] == 2  # resampled by stream
    sel = result["selective_decoding"]
    assert sel["headline"] == "online_mean" and sel["headline"] in sel["reduction"]
    methods = {p["method"] for p in sel["points"]}
    assert methods == {"uniform", "offline", "online"}
    assert all(0.4 <= p["target_interval_s"] <= 20 and p["n_decodes"] >= 1 for p in sel["points"])
    assert 1.0 <= sel["perfect_segmentation_bound"] <= 8.0
    assert sel["streams"]["count"] == 2 and sel["streams"]["annotations"] >= 2
    assert (tmp_path / "curve.png").stat().st_size > 1000
    json.dumps(result)  # JSON-ready


def test_the_retrieval_gallery_holds_training_combination_distractors():
    """A distractor placed closer to each query than its true clip takes rank 1: it is in the gallery."""
    from perception.data.shapesworld import ShapesWorldClips

    caps = [[f"the red circle moves {d}"] for d in ("left", "right", "up", "down")]
    table = {c[0]: torch.eye(8)[i] for i, c in enumerate(caps)}

    def embed_text(texts: list[str]) -> torch.Tensor:
        return torch.stack([table[t] for t in texts])  # [P, 8]

    clips = ClipBatch(torch.stack([table[c[0]] for c in caps]), captions=caps)
    far = ClipBatch(torch.eye(8)[4:8], captions=[["a green square grows"]] * 4)
    near = ClipBatch(2 * clips.s_hat, captions=[["a green square grows"]] * 4)  # higher dot with each query
    assert retrieval(embed_text, clips, far, pool=4)["retrieval_r1"]["value"] == 1.0
    assert retrieval(embed_text, clips, near, pool=4)["retrieval_r1"]["value"] == 0.0
    # the suite's distractors are clips of training combinations
    distractors = ShapesWorldClips(40, seed=DISTRACTOR_SEED, split="train")
    assert all(distractors.spec(i).slots in TRAIN_COMBOS for i in range(40))


def test_eval_command_refuses_a_bad_checkpoint_and_bad_seeds(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "nothing-here")]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(SHIPPED), "--seeds", "0,x"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_shipped_checkpoint_loads_and_clears_a_sanity_bar():
    """Chance is 1/240 for the joint class, 1/10 for the action, ~1/96 for retrieval among 96 clips;
    a quick held-out sample must be far above it (full figures: `perception eval`, docs/model.md)."""
    torch.set_num_threads(1)
    model = VLJepa.load(SHIPPED, device="cpu")
    out = clip_tasks(model, "heldout", seed=7, cfg=SuiteConfig(clips=48, retrieval_pool=48, batch=48))
    assert out["classification_per_slot"]["action"]["value"] >= 0.5, out
    assert out["classification_top1"]["value"] >= 0.3, out
    assert out["retrieval_r1"]["value"] >= 0.1, out
    assert out["vqa_accuracy_per_type"]["colour"]["value"] >= 0.5, out  # chance 1/6


def test_events_sweep_reads_every_threshold_on_one_embedding_of_the_streams():
    """Higher thresholds cut fewer captions, over the same true segments."""
    from perception.eval.events_sweep import sweep

    torch.set_num_threads(1)
    model = VLJepa.load(SHIPPED, device="cpu")
    rows = sweep(model, "val", [2.0, 50.0], TINY_SUITE)
    assert [r["threshold"] for r in rows] == [2.0, 50.0]
    assert all(is_estimate(r["described"]) and r["described"]["n"] == 2 for r in rows)
    assert rows[0]["captions_per_segment"] > rows[1]["captions_per_segment"]
    assert rows[0]["segments"] == rows[1]["segments"]  # the same true segments under every setting
