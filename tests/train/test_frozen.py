"""The controlled comparison's learners on a frozen X-encoder, the tiny-vlm preset and `eval compare`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from perception.config import REPO_ROOT
from perception.eval.compare import CompareConfig, compare, plot, summary_table
from perception.model import VLJepa, preset_config
from perception.model.vlm import TokenVLM
from perception.train.config import FrozenTrainConfig, load_train_config
from perception.train.frozen import FeaturePool, make_learner, train_learner
from tests.support import SMALL_MODEL, with_sections

MODEL = with_sections(SMALL_MODEL, {"y_decoder": {"max_tokens": 12}})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(model, directory) of a small VL-JEPA checkpoint standing in for checkpoints/tiny."""
    torch.manual_seed(0)
    model = VLJepa.from_config(preset_config("tiny").with_overrides(MODEL))
    d = tmp_path_factory.mktemp("source")
    model.save(d)
    return VLJepa.load(d, device="cpu", dtype="float32"), d


@pytest.fixture(scope="module")
def pool(source):
    return FeaturePool.build(source[0], 48, seed=0, batch=16)


def small_cfg(**kw) -> FrozenTrainConfig:
    base = load_train_config(REPO_ROOT / "configs" / "train-tiny-vlm.yaml")
    assert isinstance(base, FrozenTrainConfig)  # the preset file selects the frozen-encoder trainer
    return base.model_copy(update={"threads": None, "batch_size": 8, "log_every": 5, **kw})


def test_the_preset_is_the_frozen_vlm_learner():
    cfg = load_train_config(preset="tiny-vlm")
    assert isinstance(cfg, FrozenTrainConfig) and cfg.learner == "vlm"
    assert cfg.stage_steps() == (round(cfg.steps * cfg.stage1_share), cfg.steps - round(cfg.steps * cfg.stage1_share))


def test_pool_rows_cycle_and_are_shared(pool):
    a, b = pool.batch(0, 8), pool.batch(6, 8)  # step 6 x 8 = row 48: the pool of 48 starts again
    assert torch.equal(a["s_v"], b["s_v"]) and a["captions"] == b["captions"]
    assert pool.s_v.shape[0] == 48 and not pool.s_v.requires_grad


@pytest.mark.parametrize("kind", ["jepa", "vlm"])
def test_learner_trains_and_leaves_the_frozen_parts_alone(kind, source, pool):
    model, _ = source
    learner = make_learner(kind, model, seed=0)
    frozen = {k: v.clone() for k, v in learner.model.x_encoder.state_dict().items()}
    if kind == "jepa":
        frozen.update({f"y.{k}": v.clone() for k, v in learner.model.y_encoder.state_dict().items()})
        assert learner.model.predictor is not model.predictor  # a fresh predictor, not the source's
    cfg = small_cfg(learner=kind, samples=8 * 30, stage1_share=1.0)
    batch = pool.batch(0, 8)
    caps = [c[0] for c in batch["captions"]]
    with torch.no_grad():
        before = float(learner.loss(batch["s_v"], [""] * 8, caps, caps))
    run = train_learner(learner, pool, cfg)
    with torch.no_grad():
        after = float(learner.loss(batch["s_v"], [""] * 8, caps, caps))
    assert run.steps == 30 and run.samples == 240 and run.samples_per_s > 0
    assert after < before, f"{kind}: loss {before:.3f} -> {after:.3f}"
    state = learner.model.x_encoder.state_dict()
    assert all(torch.equal(frozen[k], state[k]) for k in state)
    if kind == "jepa":
        y = learner.model.y_encoder.state_dict()
        assert all(torch.equal(frozen[f"y.{k}"], y[k]) for k in y)
        assert (
            run.trainable_params == sum(p.numel() for p in learner.model.predictor.parameters() if p.requires_grad) + 1
        )
    # the source checkpoint's own modules are never touched by either learner
    assert all(torch.equal(v, model.x_encoder.state_dict()[k]) for k, v in frozen.items() if not k.startswith("y."))


def test_train_command_writes_a_loadable_vlm(source, tmp_path):
    _, src = source
    out = tmp_path / "vlm"
    cmd = [
        sys.executable, "-m", "perception.cli", "train", "--preset", "tiny-vlm", "--out", str(out),
        "--set", f"source={src}", "--set", "samples=64", "--set", "pool=32", "--set", "batch_size=8",
        "--set", "threads=1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "vlm" and summary["samples"] == 64
    vlm = TokenVLM.load(out, device="cpu")
    assert vlm.param_counts()["vlm"] == summary["trainable_params"]
    assert len(vlm.generate(torch.zeros(2, 4, 3, 32, 32), "", max_tokens=3)) == 2


def test_train_command_refuses_resume_for_a_frozen_learner(capsys):
    from perception.cli import main

    assert main(["train", "--preset", "tiny-vlm", "--out", "/nonexistent", "--resume"]) == 2
    out = capsys.readouterr()
    assert "--resume is not supported" in out.out + out.err


def test_compare_scores_both_learners_at_every_budget(source, tmp_path):
    _, src = source
    cfg = CompareConfig(budgets=(32, 64), clips=12, pool=32, batch=6, speed_steps=1, speed_rounds=2)
    result = compare(src, cfg, out_dir=tmp_path / "runs")
    assert list(result["rows"]) == ["32", "64"]
    speed = result["throughput"]
    assert len(speed["rounds"]["jepa"]) == len(speed["rounds"]["vlm"]) == 2
    assert speed["jepa_over_vlm"] == pytest.approx(speed["rows_per_s"]["jepa"] / speed["rows_per_s"]["vlm"], rel=0.02)
    for row in result["rows"].values():
        assert set(row) == {"jepa", "vlm"}
        for m in row.values():
            for key in ("caption_cider", "caption_slot_accuracy", "classification_top1", "vqa_accuracy"):
                lo, hi = m[key]["ci95"]
                assert lo <= m[key]["value"] <= hi and m[key]["n"] > 0
            assert m["train_samples_per_s"] > 0
        assert 1.5 < row["vlm"]["trainable_params"] / row["jepa"]["trainable_params"] < 3.0  # layers are whole
    # each trained learner is kept and loads back
    assert TokenVLM.load(tmp_path / "runs" / "64" / "vlm", device="cpu") is not None
    assert VLJepa.load(tmp_path / "runs" / "64" / "jepa", device="cpu") is not None
    png = plot(result, tmp_path / "cmp.png")
    assert png.stat().st_size > 10_000
    assert summary_table(result).count("| VLM |") == 2
