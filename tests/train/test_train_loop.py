"""The training loop on a real (tiny) model and real ShapesWorld clips: it learns, resumes, and its
schedule and configs behave."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from perception.config import ConfigError
from perception.model import VLJepa
from perception.train.batches import StepBatches, stage2_rows
from perception.train.config import Stage2Config, Stage3Config, load_train_config
from perception.train.loop import TRAINER_STATE, Trainer, segment_mean_embeddings, train
from perception.train.schedule import cosine_lr
from perception.train.state import ResumeError
from tests.support import small_random_checkpoint


def test_infonce_training_on_a_small_pool_beats_ln_b(small_cfg, tmp_path):
    # 8 fixed clips, batch 8: every step sees the same clips; a model that learns nothing stays at ln(8)
    cfg = small_cfg(
        data={"pool": 8},
        stage1={"steps": 40, "batch_size": 8, "lr": 3e-3, "warmup_steps": 3},
        stage2={"steps": 0},
        stage3={"steps": 0},
        log_every=5,
        checkpoint_every=1000,
    )
    result = train(cfg, tmp_path / "run")
    assert result.global_step == 40
    assert result.last_losses["stage1"] < 0.6 * math.log(8), result.last_losses
    model = VLJepa.load(tmp_path / "run", device="cpu")  # the final model is a loadable checkpoint
    assert model.cfg.x_encoder.hidden == 48


def test_resume_continues_the_step_count_and_optimizer(small_cfg, tmp_path):
    out = tmp_path / "run"
    first = train(small_cfg(stage1={"steps": 3}, stage2={"steps": 0}, stage3={"steps": 0}), out)
    assert first.global_step == 3
    state = torch.load(out / "last" / TRAINER_STATE, weights_only=True)  # tensors and plain data only
    assert state["global_step"] == 3
    # the same run, extended: resume picks up at step 3 and runs only the missing steps
    longer = small_cfg(stage1={"steps": 3}, stage2={"steps": 2}, stage3={"steps": 1})
    second = train(longer, out, resume=True)
    assert second.global_step == 6
    assert set(second.last_losses) == {"stage2", "stage3"}  # stage 1 was already done
    state = torch.load(out / "last" / TRAINER_STATE, weights_only=True)
    assert state["global_step"] == 6
    # AdamW's per-parameter step counters continued from the saved optimizer (3 + 2 for an encoder weight)
    steps = sorted({int(s["step"]) for s in state["optimizer"]["state"].values()})
    assert 5 in steps and 1 in steps  # encoder parts: 3 + 2 contrastive steps; decoder: 1 step


class Payload:
    """What a planted trainer.pt could carry: unpickling it runs code (here: creates `marker`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_refuses_a_trainer_state_that_would_run_code(small_cfg, tmp_path):
    out = tmp_path / "run"
    cfg = small_cfg(stage1={"steps": 2}, stage2={"steps": 0}, stage3={"steps": 0})
    train(cfg, out)
    path = out / "last" / TRAINER_STATE
    state = torch.load(path, weights_only=True)
    marker = tmp_path / "code-ran"
    torch.save({**state, "extra": Payload(marker)}, path)
    with pytest.raises(ResumeError, match="cannot resume"):
        train(cfg, out, resume=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: the old loader would have run it
    assert marker.exists()


def test_time_budget_ends_a_stage_early(small_cfg, tmp_path):
    cfg = small_cfg(
        stage1={"steps": 10_000, "time_budget_s": 2.0},
        stage2={"steps": 0},
        stage3={"steps": 0},
        checkpoint_every=10_000,
    )
    result = train(cfg, tmp_path / "run")
    assert result.global_step == 10_000  # the counter jumps to the stage's end (resume stays aligned)
    assert result.wall_s < 60


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    lrs = [cosine_lr(s, 100, 1.0, warmup=10, min_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert cosine_lr(20, 100, 1.0, warmup=10, progress=1.0) == pytest.approx(0.05)  # budget spent: the floor
    with pytest.raises(ValueError):
        cosine_lr(0, 0, 1.0)


def test_step_batches_never_repeat_across_ranks_and_steps():
    seen = []
    for rank in range(2):
        seen += [i for b in StepBatches(0, 5, 4, rank, 2, offset=100) for i in b]
    assert len(seen) == len(set(seen)) == 40 and min(seen) == 100
    resumed = list(StepBatches(3, 5, 4, 1, 2, offset=100))
    assert resumed == list(StepBatches(0, 5, 4, 1, 2, offset=100))[3:]
    assert all(i < 6 for b in StepBatches(0, 5, 4, 0, 1, offset=0, modulo=6) for i in b)


def test_stage2_rows_mix_vqa_captions_and_neutral():
    import numpy as np

    batch = {
        "captions": [["the red circle moves left", "a red circle slides to the left"]] * 200,
        "qa": [
            [
                {
                    "kind": "colour",
                    "question": "what colour is the circle?",
                    "answer": "red",
                    "candidates": ["red", "blue"],
                }
            ]
        ]
        * 200,
    }
    rows = stage2_rows(
        batch,
        Stage2Config(steps=1, batch_size=2, lr=1e-3, stage1_fraction=0.25, vqa_fraction=0.5),
        "",
        np.random.default_rng(0),
    )
    kinds = {k: rows.kinds.count(k) / 200 for k in ("neutral", "vqa", "caption")}
    assert 0.15 < kinds["neutral"] < 0.35 and 0.25 < kinds["vqa"] < 0.5 and 0.25 < kinds["caption"] < 0.5
    for q, t, key, kind in zip(rows.queries, rows.targets, rows.keys, rows.kinds):
        if kind == "vqa":
            assert (q, t, key) == ("what colour is the circle?", "red", "answer:red")
        else:
            assert key == "the red circle moves left" and (q == "") == (kind == "neutral")


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "stage1: {steps: -1, batch_size: 4, lr: 1}\nstage2: {steps: 1, batch_size: 4, lr: 1}\n"
        "stage3: {steps: 1, batch_size: 4, lr: 1}\nbogus: 1\n"
    )
    with pytest.raises(ConfigError) as err:
        load_train_config(bad)
    assert "stage1.steps" in str(err.value) and "bogus" in str(err.value)
    with pytest.raises(ConfigError):
        load_train_config(preset="nope")
    cfg = load_train_config(preset="tiny", overrides={"stage1.steps": 7})
    assert cfg.stage1.steps == 7


def test_gpu_preset_trains_the_same_model_as_the_cpu_preset():
    """The shipped pipeline's latency figures hold for a checkpoint from either recipe only while both
    build the same architecture; the GPU recipe differs in data and schedule alone."""
    cpu, gpu = load_train_config(preset="tiny"), load_train_config(preset="tiny-gpu")
    assert gpu.model == cpu.model
    assert gpu.data.pool is None and gpu.data.num_workers > 0  # fresh clips from worker processes
    assert gpu.stage1.batch_size > cpu.stage1.batch_size


def test_fine_tuning_from_a_checkpoint_on_stream_windows(small_cfg, tmp_path):
    """`model.checkpoint` starts the run from trained weights; `data.stream_windows` feeds it windows cut from
    streams (every stage that renders video; stage 3 reads captions only)."""
    base = tmp_path / "base"
    train(small_cfg(stage1={"steps": 3}, stage2={"steps": 0}, stage3={"steps": 0}), base)
    tuned = small_cfg(
        seed=1,
        model={"checkpoint": str(base)},
        data={"stream_windows": 1.0, "window_s": 2.0},
        stage1={"steps": 2, "lr": 1e-12, "warmup_steps": 0},
        stage2={"steps": 2},
        stage3={"steps": 1},
    )
    result = train(tuned, tmp_path / "tuned")
    assert result.global_step == 5 and set(result.last_losses) == {"stage1", "stage2", "stage3"}
    a = VLJepa.load(base, device="cpu").state_dict()
    b = VLJepa.load(tmp_path / "tuned", device="cpu").state_dict()
    # another seed, so a fresh init would be far off; stage 2 moved the weights only a little from the checkpoint
    key = next(k for k in a if k.startswith("x_encoder.") and k.endswith("weight"))
    assert torch.allclose(a[key], b[key], atol=0.05), key


def test_stage3_predicted_fraction_teaches_the_decoder_the_predictors_embeddings(small_cfg, tmp_path):
    """Rows fed the predictor's S^_Y: the decoder then decodes those embeddings far better than one
    trained on text embeddings alone (same steps, same clips)."""
    base = tmp_path / "base"
    train(
        small_cfg(data={"pool": 4}, stage1={"steps": 2, "batch_size": 4}, stage2={"steps": 0}, stage3={"steps": 0}),
        base,
    )
    losses = {}
    for frac in (0.0, 1.0):
        cfg = small_cfg(
            model={"checkpoint": str(base)},
            data={"pool": 4},
            stage1={"steps": 0},
            stage2={"steps": 0},
            stage3={"steps": 80, "batch_size": 4, "lr": 3e-3, "warmup_steps": 0, "predicted_fraction": frac},
            checkpoint_every=1000,
        )
        train(cfg, tmp_path / f"frac{frac}")
        model = VLJepa.load(tmp_path / f"frac{frac}", device="cpu")
        from perception.data.shapesworld import ShapesWorldClips, collate_clips

        batch = collate_clips(
            [ShapesWorldClips(4, size=model.cfg.x_encoder.image_size, max_objects=1)[i] for i in range(4)]
        )
        s_hat = model.predict(model.encode_video(batch["video"]), "")
        with torch.no_grad():  # every paraphrase of each clip's caption, given that clip's S^_Y
            emb = torch.nn.functional.normalize(s_hat.float(), dim=-1).clone()  # [4, D]
            pairs = [(k, text) for k, caps in enumerate(batch["captions"]) for text in caps]
            out = model.decoder_loss([t for _, t in pairs], embeddings=emb[[k for k, _ in pairs]])
            losses[frac] = float(out.loss)
    assert losses[1.0] < 0.8 * losses[0.0], losses  # measured 0.73 vs 1.10


def test_stage3_row_fractions_must_fit_in_one_batch(tmp_path):
    with pytest.raises(ValueError, match="predicted_fraction \\+ segment_mean_fraction must be <= 1"):
        Stage3Config(steps=1, batch_size=4, lr=1e-3, predicted_fraction=0.6, segment_mean_fraction=0.5)
    with pytest.raises(ConfigError, match="segment_mean_fraction"):
        load_train_config(
            preset="tiny", overrides={"stage3.predicted_fraction": 0.5, "stage3.segment_mean_fraction": 0.75}
        )
    ok = Stage3Config(steps=1, batch_size=8, lr=1e-3, predicted_fraction=0.5, segment_mean_fraction=0.5)
    assert ok.segment_rows() == 4
    assert Stage3Config(steps=1, batch_size=8, lr=1e-3, segment_mean_fraction=0.01).segment_rows() == 1
    assert Stage3Config(steps=1, batch_size=8, lr=1e-3).segment_rows() == 0


def test_segment_mean_embeddings_are_what_the_service_decodes(tmp_path):
    """Each window's unit S^_Y, averaged and re-normalised the way the events node closes a segment."""
    model = VLJepa.load(small_random_checkpoint(tmp_path / "m"), device="cpu")
    T, size = model.cfg.x_encoder.frames, model.cfg.x_encoder.image_size
    video = torch.randint(0, 256, (2, 3, T, 3, size, size), dtype=torch.uint8)  # [S, K, T, C, H, W]
    got = segment_mean_embeddings(model, video)  # [S, D]
    for s in range(2):
        windows = model.predict(model.encode_video(video[s]), "").numpy()  # [K, D], as the encoder publishes
        mean = windows.mean(0)
        mean /= torch.linalg.norm(torch.from_numpy(mean)).item() + 1e-12  # perception/nodes/segments.py
        assert torch.allclose(got[s], torch.from_numpy(mean), atol=1e-5)
    assert not torch.allclose(got[0], model.predict(model.encode_video(video[0, :1]), "")[0], atol=1e-3)


def segment_cfg(small_cfg, base, **stage3):
    return small_cfg(
        model={"checkpoint": str(base)},
        stage1={"steps": 0},
        stage2={"steps": 0},
        stage3={"steps": 3, "batch_size": 4, "lr": 3e-3, "warmup_steps": 0, **stage3},
        checkpoint_every=1000,
    )


def test_stage3_batches_hold_segment_rows_in_a_resumable_order(small_cfg, tmp_path):
    cfg = segment_cfg(
        small_cfg,
        small_random_checkpoint(tmp_path / "base"),
        predicted_fraction=0.25,
        segment_mean_fraction=0.5,
        segment_windows=3,
    )
    trainer = Trainer(cfg, tmp_path / "run")
    T, size = trainer.model.cfg.x_encoder.frames, trainer.model.cfg.x_encoder.image_size
    batches = list(trainer._batches(2, cfg.stage3, 0, render=True))
    assert len(batches) == 3
    first = batches[0]
    assert first["video"].shape == (2, T, 3, size, size)  # clip rows: text or predicted embeddings
    assert first["segments"]["video"].shape == (2, 3, T, 3, size, size)  # [S, K, T, C, H, W]
    resumed = next(iter(trainer._batches(2, cfg.stage3, 1, render=True)))  # --resume at step 1
    assert torch.equal(resumed["segments"]["video"], batches[1]["segments"]["video"])
    assert resumed["segments"]["index"] == batches[1]["segments"]["index"] != first["segments"]["index"]
    only = segment_cfg(small_cfg, tmp_path / "base", segment_mean_fraction=1.0)
    batch = next(iter(Trainer(only, tmp_path / "only")._batches(2, only.stage3, 0, render=False)))
    assert batch["captions"] == [] and len(batch["segments"]["captions"]) == 4


def test_stage3_segment_mean_rows_train_the_decoder_and_leave_the_encoders(small_cfg, tmp_path):
    base = small_random_checkpoint(tmp_path / "base")
    cfg = segment_cfg(small_cfg, base, predicted_fraction=0.25, segment_mean_fraction=0.5, embedding_noise=0.2)
    result = train(cfg, tmp_path / "run")
    assert result.global_step == 3 and math.isfinite(result.last_losses["stage3"])
    a = VLJepa.load(base, device="cpu").state_dict()
    b = VLJepa.load(tmp_path / "run", device="cpu").state_dict()
    moved = {k for k in a if not torch.equal(a[k], b[k])}
    assert moved and all(k.startswith("y_decoder.") for k in moved), sorted(moved)[:5]
    assert any(k.startswith("x_encoder.") for k in a) and any(k.startswith("predictor.") for k in a)


def test_stage2_kind_weights_ask_the_weighted_kinds_more_and_reject_unknown_kinds():
    import numpy as np
    from pydantic import ValidationError

    qas = [
        {"kind": k, "question": f"{k}?", "answer": k, "candidates": [k]}
        for k in ("colour", "shape", "count", "presence", "presence")
    ]
    batch = {"captions": [["the red circle moves left"]] * 2000, "qa": [qas] * 2000}

    def presence_share(weights):
        cfg = Stage2Config(steps=1, batch_size=2, lr=1e-3, stage1_fraction=0.0, vqa_fraction=1.0, **weights)
        rows = stage2_rows(batch, cfg, "", np.random.default_rng(0))
        return sum(t == "presence" for t in rows.targets) / len(rows.targets)

    assert 0.35 < presence_share({}) < 0.45  # 2 of 5 questions
    assert 0.75 < presence_share({"vqa_kind_weights": {"presence": 6.0}}) < 0.85  # 12 of 15
    assert presence_share({"vqa_kind_weights": {"presence": 0.0}}) == 0.0
    with pytest.raises(ValidationError, match="vqa_kind_weights"):
        Stage2Config(steps=1, batch_size=2, lr=1e-3, vqa_kind_weights={"size": 2.0})


def test_contrast_groups_differ_in_one_slot_and_keep_a_resumable_order(small_cfg, tmp_path):
    from pydantic import ValidationError

    from perception.data.shapesworld import sample_clip
    from perception.train.contrast import SLOTS

    cfg = small_cfg(
        data={"pool": 2048, "contrast_fraction": 0.5, "contrast_group": 4, "contrast_weights": {"shape": 1.0}},
        stage1={"steps": 3, "batch_size": 16},
    )
    trainer = Trainer(cfg, tmp_path / "run")
    sampler = trainer._contrast(trainer._sampler(0, cfg.stage1, 0, 16), 0, 16)
    batches = list(sampler)
    assert len(batches) == 3 and all(len(b) == 16 and max(b) < 2048 for b in batches)
    plain = list(trainer._sampler(0, cfg.stage1, 0, 16))
    assert [b[8:] for b in batches] == [p[8:] for p in plain]  # the other half is the usual draw
    shape = SLOTS.index("shape")
    sizes = []
    for step, b in enumerate(batches):
        groups = sampler.groups(step)
        assert [i for g in groups for i in g] == b[:8]
        for g in groups:
            combos = [sample_clip(0, i, "train", 1).slots for i in g]
            assert len({c[shape] for c in combos}) == len(combos)  # every shape differs...
            assert len({c[:shape] + c[shape + 1 :] for c in combos}) == 1  # ...and nothing else
            sizes.append(len(g))
        assert all(len(g) >= 2 for g in groups[:-1])  # groups, not single clips (the last may fill a gap)
    assert max(sizes) == 4
    assert list(trainer._contrast(trainer._sampler(0, cfg.stage1, 1, 16), 1, 16))[0] == batches[1]  # resume
    with pytest.raises(ValidationError, match="contrast_fraction needs data.pool"):
        small_cfg(data={"contrast_fraction": 0.5})
    with pytest.raises(ValidationError, match="contrast_weights"):
        small_cfg(data={"pool": 64, "contrast_fraction": 0.5, "contrast_weights": {"size": 1.0}})
