"""Training on a frozen X-encoder: the two learners of the controlled comparison, on one set of features.

The paper's VL-JEPA vs VLM comparison (section 4.5) holds the vision encoder and the data fixed and varies
only the objective. Here both learners start from the same VL-JEPA checkpoint (`source`) with its X-encoder
frozen, and see the same cached S_V (one X-encoder pass per pool clip), the same rows (stage1_rows /
stage2_rows from the same seeds), batch, schedule family and sample budget:

- jepa: a freshly initialised predictor (+ temperature) trained with InfoNCE against the source's frozen
  Y-encoder; it captions through the source's Y-decoder, which was trained on text embeddings only;
- vlm: a TokenVLM (perception/model/vlm.py, ~2x the predictor's trainable parameters) trained with
  next-token cross-entropy on the same target texts, the query as an unscored prefix.

    pool = FeaturePool.build(source, clips=16384, seed=0)
    result = train_learner(make_learner(cfg, source), pool, cfg)      # -> LearnerRun (throughput, losses)

`perception train --preset tiny-vlm` trains the vlm learner and saves it; `perception eval compare` trains
both at several budgets (perception/eval/compare.py).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import yaml
from torch import nn

from bus.logs import get_logger
from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.model import VLJepa
from perception.model.loss import info_nce
from perception.model.predictor import Predictor
from perception.model.vlm import TokenVLM
from perception.train.batches import keys_to_groups, row_rng, stage1_rows, stage2_rows
from perception.train.config import FrozenTrainConfig, Stage1Config, Stage2Config
from perception.train.schedule import cosine_lr

log = get_logger("train.frozen")


# ------------------------------------------------------------------------------------------- features
@dataclass
class FeaturePool:
    """Frozen X-encoder output of `len(captions)` training clips, with what the row builders read."""

    s_v: torch.Tensor  # [P,N,Dv] float32
    captions: list[list[str]]
    qa: list[list[dict]]
    encode_s: float = 0.0  # wall time to render and encode the pool

    def __len__(self) -> int:
        return len(self.captions)

    @classmethod
    def build(cls, source: VLJepa, clips: int, seed: int = 0, batch: int = 64) -> FeaturePool:
        xc = source.cfg.x_encoder
        data = ShapesWorldClips(clips, seed=seed, split="train", frames=xc.frames, size=xc.image_size)
        t0 = time.perf_counter()
        s_v, caps, qa = [], [], []
        for start in range(0, clips, batch):
            b = collate_clips([data[i] for i in range(start, min(clips, start + batch))])
            s_v.append(source.encode_video(b["video"]).float().clone())  # [b,N,Dv]
            caps += b["captions"]
            qa += b["qa"]
            if (start // batch) % 50 == 0:
                log.info("encoding the feature pool", done=start + len(b["captions"]), of=clips)
        return cls(torch.cat(s_v), caps, qa, time.perf_counter() - t0)

    def batch(self, step: int, size: int) -> dict:
        """Step `step`'s rows: the pool cycled in order (the same rows for every learner)."""
        idx = [(step * size + k) % len(self) for k in range(size)]
        return {
            "s_v": self.s_v[idx],
            "captions": [self.captions[i] for i in idx],
            "qa": [self.qa[i] for i in idx],
        }


# ------------------------------------------------------------------------------------------- learners
class Learner(Protocol):
    kind: str

    def parameters(self) -> list[nn.Parameter]: ...

    def loss(self, s_v: torch.Tensor, queries: list[str], targets: list[str], keys: list[str]) -> torch.Tensor: ...


class JepaLearner:
    """A fresh predictor and temperature on the source's frozen X-encoder, Y-encoder and Y-decoder."""

    kind = "jepa"

    def __init__(self, source: VLJepa, seed: int) -> None:
        m = copy.deepcopy(source).float()
        torch.manual_seed(seed)
        m.predictor = Predictor(
            m.cfg.predictor,
            m.x_encoder.out_dim,
            m.cfg.embed_dim,
            _vocab(m),
            shared_table=m.y_encoder.word_embeddings,
            load_weights=False,
        ).to(m.device)
        for part in (m.x_encoder, m.y_encoder, m.y_decoder):
            part.requires_grad_(False)
        with torch.no_grad():
            m.log_temperature.fill_(math.log(m.cfg.temperature))
        self.model = m

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def train(self, mode: bool = True) -> None:
        self.model.predictor.train(mode)

    def loss(self, s_v, queries, targets, keys) -> torch.Tensor:
        m = self.model
        q = m._query_batch(queries, s_v.shape[0])
        pred = m.predictor(s_v, q.ids, q.mask).embedding  # [B,D]
        with torch.no_grad():
            target = m.y_encoder.embed_texts(targets, m.device)  # [B,D] frozen, cached per text
        return info_nce(pred, target, m.temperature, keys_to_groups(keys)).loss


def _vocab(m: VLJepa) -> int:
    return len(m.query_tokenizer) if m.query_tokenizer is not None else m.y_encoder.word_embeddings.num_embeddings


class VLMLearner:
    """A TokenVLM on the source's frozen X-encoder and word table."""

    kind = "vlm"

    def __init__(self, source: VLJepa, seed: int, size_ratio: float = 2.0) -> None:
        torch.manual_seed(seed)
        self.model = TokenVLM.from_vljepa(source, size_ratio=size_ratio).float()

    def parameters(self) -> list[nn.Parameter]:
        return self.model.trainable_parameters()

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def loss(self, s_v, queries, targets, keys) -> torch.Tensor:
        return self.model.loss(s_v, queries, targets)


def make_learner(kind: str, source: VLJepa, seed: int, size_ratio: float = 2.0) -> JepaLearner | VLMLearner:
    if kind == "jepa":
        return JepaLearner(source, seed)
    if kind == "vlm":
        return VLMLearner(source, seed, size_ratio)
    raise ValueError(f"unknown learner {kind!r}; valid: jepa, vlm")


# ------------------------------------------------------------------------------------------- the loop
@dataclass
class LearnerRun:
    kind: str
    samples: int
    steps: int
    wall_s: float
    samples_per_s: float
    trainable_params: int
    losses: dict[str, float] = field(default_factory=dict)  # stage -> mean loss over its last log window


def train_learner(learner: JepaLearner | VLMLearner, pool: FeaturePool, cfg: FrozenTrainConfig) -> LearnerRun:
    """Stage 1 (neutral query -> caption) then stage 2 (captions asked for in words, VQA), each with its own
    warmup + cosine LR, `cfg.samples` rows in all. Rows depend only on (seed, stage, step)."""
    params = learner.parameters()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.stage1.lr,
        betas=tuple(cfg.optim.betas),
    )
    s1_steps, s2_steps = cfg.stage_steps()
    s1 = Stage1Config(steps=max(1, s1_steps), batch_size=cfg.batch_size, lr=cfg.stage1.lr)
    s2 = Stage2Config(
        steps=max(1, s2_steps),
        batch_size=cfg.batch_size,
        lr=cfg.stage2.lr,
        stage1_fraction=cfg.stage2.stage1_fraction,
        vqa_fraction=cfg.stage2.vqa_fraction,
        caption_queries=cfg.stage2.caption_queries,
    )
    learner.train(True)
    losses: dict[str, float] = {}
    t0, global_step = time.perf_counter(), 0
    for name, stage, steps in (("stage1", cfg.stage1, s1_steps), ("stage2", cfg.stage2, s2_steps)):
        window: list[float] = []
        for s in range(steps):
            lr = cosine_lr(s, steps, stage.lr, stage.warmup_steps, stage.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = pool.batch(global_step, cfg.batch_size)
            rng = row_rng(cfg.seed, name, s, 0)
            rows = stage1_rows(batch, s1, rng) if name == "stage1" else stage2_rows(batch, s2, s1.neutral_query, rng)
            loss = learner.loss(batch["s_v"], rows.queries, rows.targets, rows.keys)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            opt.step()
            global_step += 1
            window.append(float(loss.detach()))
            if (s + 1) % cfg.log_every == 0 or s + 1 == steps:
                elapsed = time.perf_counter() - t0
                log.info(
                    "progress",
                    learner=learner.kind,
                    stage=name,
                    step=f"{s + 1}/{steps}",
                    loss=round(float(np.mean(window)), 4),
                    lr=f"{lr:.2e}",
                    samples_per_s=round(global_step * cfg.batch_size / elapsed, 1),
                    eta_min=round((cfg.steps - global_step) * elapsed / global_step / 60, 1),
                )
                losses[name] = float(np.mean(window))
                window = []
    learner.train(False)
    wall = time.perf_counter() - t0
    samples = global_step * cfg.batch_size
    return LearnerRun(learner.kind, samples, global_step, wall, samples / wall, learner.trainable_count(), losses)


def train_frozen(cfg: FrozenTrainConfig, out_dir: str | Path) -> dict:
    """`perception train --preset tiny-vlm`: encode the pool, train the learner, save it to out_dir."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    src = cfg.source_path()
    source = VLJepa.load(src, device="cpu", dtype="float32")
    pool = FeaturePool.build(source, cfg.pool, seed=cfg.data_seed)
    log.info("feature pool ready", clips=len(pool), encode_s=round(pool.encode_s, 1))
    learner = make_learner(cfg.learner, source, cfg.seed, cfg.size_ratio)
    run = train_learner(learner, pool, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.learner == "vlm":
        learner.model.save(out, source=src)
    else:
        learner.model.save(out)
    (out / "train.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    summary = {"out": str(out), **run.__dict__, "pool_encode_s": round(pool.encode_s, 1)}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("training done", **{k: v for k, v in summary.items() if k != "losses"})
    return summary
