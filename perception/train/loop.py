"""The training loop shared by the three stages: one optimizer, per-stage cosine LR, resumable checkpoints.

Layout of an output directory:
    OUT/                   final model (VLJepa.save: model.safetensors + config.json) and train.yaml
    OUT/last/              latest resumable state: model + trainer.pt (optimizer, global step, config)
Resume (`--resume`) reloads OUT/last and continues at the saved global step with the same data order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from bus.logs import get_logger
from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.data.stream_windows import MixedItems, SegmentWindows, StreamWindows, collate_segments
from perception.model import VLJepa
from perception.model.loss import info_nce
from perception.model.vljepa import resolve_device
from perception.train.batches import (
    StepBatches,
    TextRows,
    decoder_texts,
    keys_to_groups,
    row_rng,
    stage1_rows,
    stage2_rows,
)
from perception.train.config import Stage3Config, StageConfig, TrainConfig
from perception.train.contrast import ContrastBatches, ContrastIndex
from perception.train.distributed import (
    DistEnv,
    gather_objects,
    gather_rows,
    init_distributed,
    max_over_ranks,
    mean_over_ranks,
    shutdown,
)
from perception.train.schedule import cosine_lr
from perception.train.state import load_trainer_state
from perception.train.workers import loader_context

TRAINER_STATE = "trainer.pt"
STAGE_OFFSET = 10**9  # clip indices of stage k start at k * STAGE_OFFSET


@dataclass
class TrainResult:
    out_dir: Path
    global_step: int
    wall_s: float
    last_losses: dict[str, float]  # stage -> mean loss over its last log window


class CachedClips(torch.utils.data.Dataset):
    """Keeps every rendered item of a fixed clip pool (single-process loading only)."""

    def __init__(self, data: ShapesWorldClips) -> None:
        self.data, self.items = data, {}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        if i not in self.items:
            self.items[i] = self.data[i]
        return self.items[i]


class StepModule(nn.Module):
    """What DDP wraps: one forward for either objective, returning every tensor the loss needs (so every
    trainable parameter a step uses, the temperature included, is reached from the outputs)."""

    def __init__(self, model: VLJepa) -> None:
        super().__init__()
        self.model = model

    def forward(self, kind: str, **kw):
        m = self.model
        if kind == "contrastive":
            s_v = m.x_encoder(kw["clips"])  # [B,N,Dv]
            q = m._query_batch(kw["queries"], s_v.shape[0])
            pred = m.predictor(s_v, q.ids, q.mask).embedding  # [B,D]
            target = m.y_encoder.embed_texts(kw["targets"], m.device)  # [B,D]; frozen backbone: cached per text
            return pred, target, m.temperature
        if kind == "decoder":
            return m.y_decoder(kw["embeddings"], m.y_decoder.tokenize(kw["texts"]).to(m.device)).loss
        raise ValueError(f"unknown step kind {kind!r}")


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: str | Path, resume: bool = False) -> None:
        self.cfg, self.out = cfg, Path(out_dir)
        device = resolve_device(cfg.model.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.env: DistEnv = init_distributed(device)
        self.device = torch.device(f"cuda:{self.env.local_rank}") if device.type == "cuda" else device
        self.log = get_logger("train", rank=self.env.rank)
        torch.manual_seed(cfg.seed + self.env.rank)
        state = None
        last = self.out / "last"
        if resume and (last / TRAINER_STATE).exists():
            self.model = VLJepa.load(last, device=str(self.device), dtype="float32")
            state = load_trainer_state(last / TRAINER_STATE)
        else:
            if resume:
                self.log.warning("no checkpoint to resume from; starting fresh", dir=str(last))
            torch.manual_seed(cfg.seed)  # identical initial weights on every rank
            mcfg = cfg.model.model_copy(update={"device": str(self.device), "dtype": "float32"})
            self.model = VLJepa.from_config(mcfg)
        self.model.train()
        self.step_module: nn.Module = StepModule(self.model)
        if self.env.enabled:
            self.step_module = DistributedDataParallel(
                self.step_module,
                device_ids=[self.env.local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )  # stages 1-2 leave the decoder unused, stage 3 the encoders
        groups = self.model.param_groups(lr=1.0, weight_decay=cfg.optim.weight_decay)
        for g in groups:
            g["lr_scale"] = g["lr"]  # 1.0, or the Y-encoder multiplier
        self.opt = torch.optim.AdamW(groups, betas=tuple(cfg.optim.betas))
        self.global_step = 0
        self._pool_cache: dict[str, CachedClips] = {}
        self._contrast_index: ContrastIndex | None = None  # the pool's clips by combination, planned once
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            self.global_step = int(state["global_step"])
            self.log.info("resumed", step=self.global_step, dir=str(last))
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )

    # -------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        last_losses: dict[str, float] = {}
        first = 0
        for k, (name, stage) in enumerate(self.cfg.stages()):
            start = self.global_step - first
            if stage.steps > 0 and start < stage.steps:
                last_losses[name] = self._run_stage(k, name, stage, max(0, start), first)
            first += stage.steps
        wall = time.perf_counter() - t0
        if self.env.is_main:
            # trained in float32 on this rank's device; the checkpoint keeps the config's placement ("auto")
            self.model.cfg.device, self.model.cfg.dtype = self.cfg.model.device, self.cfg.model.dtype
            self.model.save(self.out)
            (self.out / "train.yaml").write_text(yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))
            self._save_state()
            self.log.info("training done", steps=self.global_step, wall_s=round(wall, 1), out=str(self.out))
        shutdown(self.env)
        return TrainResult(self.out, self.global_step, wall, last_losses)

    def _batches(self, k: int, stage: StageConfig, start: int, render: bool) -> Iterator[dict]:
        """Step s's batch for steps [start, steps): clip rows, plus (stage 3 with segment_mean_fraction)
        a "segments" batch of segment items for the last rows. Both index streams are StepBatches, so the
        data order stays a pure function of (seed, stage, step, rank)."""
        n_seg = stage.segment_rows() if isinstance(stage, Stage3Config) else 0
        clips = self._clip_batches(k, stage, start, render, stage.batch_size - n_seg)
        if n_seg == 0:
            yield from clips
            return
        segments = self._segment_batches(k, stage, start, n_seg)
        if n_seg == stage.batch_size:  # every row is a segment row: no clip rows to draw
            for seg in segments:
                yield {"captions": [], "segments": seg}
            return
        for batch, seg in zip(clips, segments, strict=True):
            yield {**batch, "segments": seg}

    def _sampler(self, k: int, stage: StageConfig, start: int, batch: int) -> StepBatches:
        pool = self.cfg.data.pool
        return StepBatches(
            start,
            stage.steps,
            batch,
            self.env.rank,
            self.env.world,
            offset=0 if pool else k * STAGE_OFFSET,
            modulo=pool,
        )

    def _contrast(self, base: StepBatches, start: int, batch: int) -> ContrastBatches:
        dc = self.cfg.data
        if self._contrast_index is None:  # planning the pool's clips: about 2.5 s per 16,384
            self._contrast_index = ContrastIndex.of_pool(dc.seed, dc.pool, "train", dc.max_objects)
        rows = round(dc.contrast_fraction * batch)
        return ContrastBatches(
            base,
            self._contrast_index,
            rows,
            dc.contrast_group,
            dc.contrast_weights,
            self.cfg.seed,
            self.env.rank,
            start,
        )

    def _segment_batches(self, k: int, stage: Stage3Config, start: int, batch: int) -> Iterator[dict]:
        """Segment items (video uint8 [b, K, T, C, H, W]), never cached: K times a clip's pixels each."""
        mc, dc = self.model.cfg.x_encoder, self.cfg.data
        data = SegmentWindows(
            dc.pool or STAGE_OFFSET * 4,
            seed=dc.seed,
            split="train",
            windows=stage.segment_windows,
            frames=mc.frames,
            size=mc.image_size,
            window_s=dc.window_s,
        )
        yield from DataLoader(
            data,
            batch_sampler=self._sampler(k, stage, start, batch),
            num_workers=dc.num_workers,
            multiprocessing_context=loader_context(dc.num_workers),
            collate_fn=collate_segments,
            persistent_workers=False,
            prefetch_factor=4 if dc.num_workers else None,
        )

    def _clip_batches(self, k: int, stage: StageConfig, start: int, render: bool, batch: int) -> Iterator[dict]:
        mc, dc = self.model.cfg.x_encoder, self.cfg.data
        pool = dc.pool
        data = ShapesWorldClips(
            pool or STAGE_OFFSET * 4,
            seed=dc.seed,
            split="train",
            frames=mc.frames,
            size=mc.image_size,
            max_objects=dc.max_objects,
        )
        sampler = self._sampler(k, stage, start, batch)
        if dc.contrast_fraction > 0 and not isinstance(stage, Stage3Config):
            sampler = self._contrast(sampler, start, batch)
        if not render:  # stage 3 needs only the captions: plan clips, skip rasterising
            for idx in sampler:
                yield {"captions": [list(data.spec(i).captions) for i in idx]}
            return
        if dc.stream_windows > 0:
            windows = StreamWindows(
                len(data), seed=dc.seed, split="train", frames=mc.frames, size=mc.image_size, window_s=dc.window_s
            )
            data = MixedItems(data, windows, dc.stream_windows, seed=dc.seed)
        workers = dc.num_workers
        if pool and workers == 0:
            data = self._pool_cache.setdefault("clips", CachedClips(data))
        yield from DataLoader(
            data,
            batch_sampler=sampler,
            num_workers=workers,
            multiprocessing_context=loader_context(workers),
            collate_fn=collate_clips,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )

    def _run_stage(self, k: int, name: str, stage: StageConfig, start: int, first: int) -> float:
        env, cfg = self.env, self.cfg
        global_batch = stage.batch_size * env.world
        if self.env.is_main:
            self.log.info(
                "stage start", stage=name, steps=stage.steps, from_step=start, lr=stage.lr, global_batch=global_batch
            )
        taken = 0
        window: list[float] = []
        last_mean = float("nan")
        t_last, n_last = time.perf_counter(), 0
        t_stage = time.perf_counter()
        # stage 3 renders clips only when some of its rows decode the predictor's embeddings of them
        render = name != "stage3" or stage.predicted_fraction > 0
        for s, batch in enumerate(self._batches(k, stage, start, render=render), start=start):
            spent = None
            if stage.time_budget_s:  # ranks must agree on the LR and on when to stop: take the slowest clock
                spent = max_over_ranks((time.perf_counter() - t_stage) / stage.time_budget_s, env)
            if spent is not None and spent >= 1.0:
                if self.env.is_main:
                    self.log.info("stage time budget spent", stage=name, step=s, budget_s=stage.time_budget_s)
                break
            lr = cosine_lr(s, stage.steps, stage.lr, stage.warmup_steps, stage.min_lr_ratio, progress=spent)
            for g in self.opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            rng = row_rng(cfg.seed, name, s, env.rank)
            with self.autocast:
                if name == "stage3":
                    loss, info = self._decoder_step(batch, stage, rng)
                else:
                    loss, info = self._contrastive_step(name, batch, rng)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], cfg.optim.grad_clip
            )
            self.opt.step()
            self.global_step += 1
            taken += 1
            window.append(float(loss.detach()))
            n_last += 1
            if (s + 1) % cfg.log_every == 0 or s + 1 == stage.steps:
                now = time.perf_counter()
                step_s = (now - t_last) / n_last
                eta_s = (stage.steps - s - 1) * step_s
                if stage.time_budget_s:
                    eta_s = min(eta_s, max(0.0, stage.time_budget_s - (now - t_stage)))
                mean_loss = mean_over_ranks(float(np.mean(window)), env)  # a collective: every rank calls it
                if env.is_main:
                    self.log.info(
                        "progress",
                        stage=name,
                        step=f"{s + 1}/{stage.steps}",
                        global_step=self.global_step,
                        loss=round(mean_loss, 4),
                        **info,
                        lr=f"{lr:.2e}",
                        grad_norm=round(float(gnorm), 3),
                        clips_per_s=round(global_batch / step_s, 1),
                        stage_eta_min=round(eta_s / 60, 1),
                    )
                last_mean = float(np.mean(window))
                window, t_last, n_last = [], now, 0
            if self.global_step % cfg.checkpoint_every == 0 and env.is_main:
                self._save_state()
        if window:
            last_mean = float(np.mean(window))
        # the global step jumps to the stage's end: the next stage (and a resume) start where they should
        self.global_step = first + stage.steps
        if self.env.is_main:
            self.log.info("stage done", stage=name, steps_taken=taken, wall_s=round(time.perf_counter() - t_stage, 1))
        return last_mean

    def _contrastive_step(self, name: str, batch: dict, rng: np.random.Generator):
        rows: TextRows = (
            stage1_rows(batch, self.cfg.stage1, rng)
            if name == "stage1"
            else stage2_rows(batch, self.cfg.stage2, self.cfg.stage1.neutral_query, rng)
        )
        clips = batch["video"].to(self.device, non_blocking=True)
        pred, target, temp = self.step_module("contrastive", clips=clips, queries=rows.queries, targets=rows.targets)
        pred_all = gather_rows(pred.float(), self.env)  # [world*B, D]
        target_all = gather_rows(target.float(), self.env)  # [world*B, D]
        groups = keys_to_groups(gather_objects(rows.keys, self.env))
        out = info_nce(pred_all, target_all, temp, groups)
        return out.loss, {
            "ln_b": round(out.baseline, 3),
            "temp": round(out.temperature, 4),
            "spread": round(out.spread, 3),
        }

    def _decoder_step(self, batch: dict, stage: Stage3Config, rng: np.random.Generator):
        """B = n clip rows (text embedding, or S^_Y with predicted_fraction) + S segment rows (last)."""
        seg = batch.get("segments")
        n = len(batch["captions"])
        texts = decoder_texts(
            batch["captions"] + (seg["captions"] if seg is not None else []), rng
        )  # [B] one paraphrase a row
        with torch.no_grad():
            emb = self.model.y_encoder.embed_texts(texts, self.device)  # [B,D]
            emb = F.normalize(emb.float(), dim=-1)  # [B,D] what decode() feeds the decoder
            if stage.embedding_noise > 0:
                g = torch.Generator().manual_seed(int(rng.integers(2**31)))
                noise = torch.randn(emb.shape, generator=g).to(emb.device) * stage.embedding_noise
                emb = F.normalize(emb + noise / math.sqrt(emb.shape[-1]), dim=-1)
            if stage.predicted_fraction > 0 and n > 0:  # what the service decodes: the predictor's S^_Y of the clip
                # the share is of all B rows, drawn among the n clip rows (n == B without segment rows)
                share = stage.predicted_fraction if seg is None else min(1.0, stage.predicted_fraction * len(texts) / n)
                use = torch.from_numpy(rng.random(n) < share)  # [n] bool
                if bool(use.any()):
                    clips = batch["video"][use].to(self.device, non_blocking=True)
                    s_hat = self.model.predict(self.model.encode_video(clips), self.cfg.stage1.neutral_query)
                    emb[:n][use.to(emb.device)] = F.normalize(s_hat.float(), dim=-1)  # [b,D] into rows `use`
            if seg is not None:  # what the service decodes for a segment: its windows' mean S^_Y
                video = seg["video"].to(self.device, non_blocking=True)  # [S,K,T,C,H,W]
                emb[n:] = segment_mean_embeddings(self.model, video, self.cfg.stage1.neutral_query)  # [S,D]
        loss = self.step_module("decoder", embeddings=emb.to(self.model.dtype), texts=texts)
        return loss, {"tokens_ppl": round(math.exp(min(20.0, float(loss.detach()))), 2)}

    # -------------------------------------------------------------------------------- checkpoints
    def _save_state(self) -> None:
        last = self.out / "last"
        self.model.save(last)
        tmp = last / (TRAINER_STATE + ".tmp")
        torch.save(
            {
                "optimizer": self.opt.state_dict(),
                "global_step": self.global_step,
                "config": self.cfg.model_dump(mode="json"),
            },
            tmp,
        )
        tmp.replace(last / TRAINER_STATE)
        (self.out / "last" / "progress.json").write_text(json.dumps({"global_step": self.global_step}))


def segment_mean_embeddings(model: VLJepa, video: torch.Tensor, query: str = "") -> torch.Tensor:
    """video [S, K, T, C, H, W] -> [S, D]: each window's unit S^_Y (the encoder node's), averaged over the
    K windows and re-normalised (the events node's segment mean; decode() normalises again: a no-op)."""
    S, K = video.shape[:2]
    s_hat = model.predict(model.encode_video(video.flatten(0, 1)), query)  # [S*K, D] unit rows
    return F.normalize(s_hat.float().view(S, K, -1).mean(1), dim=-1)  # [S, D]


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False) -> TrainResult:
    return Trainer(cfg, out_dir, resume=resume).run()
