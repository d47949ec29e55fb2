"""The real-size recipe: VL-JEPA's contrastive objective on users' video shards, on torchrun.

    torchrun --nnodes N --nproc-per-node G -m perception.cli train --preset vjepa2-vitl --data SHARDS

What runs (docs/training.md):
- the X-encoder is frozen and runs under `inference_mode` (bf16 on GPU); with `data.cache_features` its
  S_V is kept on disk per shard (perception/train/feature_cache.py) and later epochs skip decode and encoder;
- the predictor and the Y-encoder train (the Y-encoder backbone at `model.y_encoder.lr_mult`, 0.05 for
  vitl) under DDP or FSDP2 (`parallel.strategy`), bf16 autocast on GPU, optional activation checkpointing
  of every transformer layer, `global_batch / (micro_batch x ranks)` micro-steps of gradient accumulation;
- InfoNCE over each micro-step's rows of all ranks (perception/train/distributed.py gathers them);
- the data order is a function of (seed, step) only (perception/train/sample_streams.py), and checkpoints
  hold full (unsharded) state, so a run resumes on any number of ranks that divides `data.streams`.

Output directory:
    OUT/step-NNNNNNNN/trainer.pt   resumable state (the newest `keep_checkpoints` are kept)
    OUT/losses.jsonl               one line per optimizer step (rank 0)
    OUT/                           at the end: the model (VLJepa.save) and train.yaml
The Y-decoder is not trained here (it stays as built); captions need a decoder stage on top.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from bus.logs import get_logger
from perception.config import ConfigError
from perception.model import VLJepa
from perception.model.loss import info_nce
from perception.model.vljepa import resolve_device
from perception.train.batches import keys_to_groups
from perception.train.config import ShardedTrainConfig
from perception.train.distributed import DistEnv, gather_objects, gather_rows, init_distributed, shutdown
from perception.train.feature_cache import FeatureCache, encoder_fingerprint
from perception.train.sample_streams import MicroBatches, SampleStreams, check_layout
from perception.train.schedule import cosine_lr
from perception.train.state import ResumeError, load_trainer_state
from perception.train.workers import loader_context

STATE_FILE = "trainer.pt"


@dataclass
class ShardedResult:
    out_dir: Path
    global_step: int
    wall_s: float
    last_loss: float


class ContrastiveHead(nn.Module):
    """What DDP wraps: the trainable parts of one contrastive step (predictor, Y-encoder, temperature)."""

    def __init__(self, model: VLJepa) -> None:
        super().__init__()
        self.model_ref = [model]  # not a submodule: DDP must not see (or broadcast) the frozen X-encoder
        self.predictor, self.y_encoder = model.predictor, model.y_encoder
        if isinstance(model.log_temperature, nn.Parameter):
            self.log_temperature = model.log_temperature

    def forward(self, s_v: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, targets: list[str]):
        m = self.model_ref[0]
        pred = self.predictor(s_v, ids, mask).embedding  # [B,D]
        target = self.y_encoder.embed_texts(targets, s_v.device)  # [B,D]
        return pred, target, m.temperature


def rows_of(items: list[dict], neutral_query: str) -> tuple[list[str], list[str]]:
    """(queries, targets): a caption sample is (neutral query -> its text), a VQA one (question -> answer)."""
    queries, targets = [], []
    for it in items:
        if "query" in it and "answer" in it:
            queries.append(str(it["query"]))
            targets.append(str(it["answer"]))
        elif "text" in it:
            queries.append(neutral_query)
            targets.append(str(it["text"]))
        else:
            raise ValueError(f"sample {it.get('shard')}:{it.get('key')} has neither text nor query/answer")
    return queries, targets


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Global grad-norm clipping over plain and FSDP-sharded (DTensor) grads alike: a shard's squares are
    summed over ranks, a replicated grad is counted once."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    dev = grads[0].device  # squares summed where the grads live: one host transfer a step, not one a tensor
    local = [g.to_local() for g in grads if isinstance(g, DTensor)]
    whole = [g for g in grads if not isinstance(g, DTensor)]
    sharded = sum((g.double().pow(2).sum() for g in local), torch.zeros((), dtype=torch.float64, device=dev))
    plain = sum((g.double().pow(2).sum() for g in whole), torch.zeros((), dtype=torch.float64, device=dev))
    if local and dist.is_initialized():
        dist.all_reduce(sharded)
    norm = math.sqrt(float(sharded + plain))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)
    return norm


class ShardedTrainer:
    def __init__(self, cfg: ShardedTrainConfig, out_dir: str | Path, resume_from: str | Path | None = None) -> None:
        self.cfg, self.out = cfg, Path(out_dir)
        if not cfg.data.shards:
            raise ConfigError("the sharded recipe needs data.shards (or `--data SHARDS`)")
        section = cfg.model_section()
        device = resolve_device(section.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.env: DistEnv = init_distributed(device)
        self.device = torch.device(f"cuda:{self.env.local_rank}") if device.type == "cuda" else device
        self.log = get_logger("train.sharded", rank=self.env.rank)
        state = self._read_state(resume_from)

        env, workers = self.env, cfg.data.num_workers
        streams = int(state["streams"]) if state else cfg.data.streams or env.world * max(1, workers)
        if state and int(state["global_batch"]) != cfg.global_batch:
            raise ConfigError(
                f"global_batch {cfg.global_batch} differs from the checkpoint's {state['global_batch']}: "
                "the data order and the schedule depend on it"
            )
        self.streams = streams
        self.data = SampleStreams(cfg.data.shards, streams=streams, rank=env.rank, world_size=env.world, seed=cfg.seed)
        check_layout(streams, env.world, workers, len(self.data.index.shards))
        rows = cfg.micro_batch * env.world  # rows of one micro-step over all ranks
        if rows % streams or cfg.global_batch % rows:
            raise ConfigError(
                f"micro_batch {cfg.micro_batch} x {env.world} rank(s) = {rows} rows per micro-step must be a multiple "
                f"of data.streams ({streams}) and divide global_batch ({cfg.global_batch})"
            )
        self.per_stream, self.accum = rows // streams, cfg.global_batch // rows

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        mcfg = section.to_model_config()
        mcfg.device, mcfg.dtype = str(self.device), "float32"
        self.model = VLJepa(mcfg)
        if not self.model.cfg.x_encoder.frozen:
            raise ConfigError("the sharded recipe freezes the X-encoder: set model.overrides.x_encoder.frozen: true")
        self.model.y_decoder.requires_grad_(False)
        self.model.to(self.device)
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        if self.bf16:
            self.model.x_encoder.to(torch.bfloat16)  # frozen: its bf16 weights are all it needs
        self.model.train()
        self.head = ContrastiveHead(self.model)
        if cfg.parallel.activation_checkpointing:
            self._checkpoint_layers()
        self.fsdp_units: list = []
        self.step_module: nn.Module = self.head
        if cfg.parallel.strategy == "fsdp":
            self._shard()
        elif env.enabled:
            self.step_module = DistributedDataParallel(
                self.head, device_ids=[env.local_rank] if self.device.type == "cuda" else None
            )
        groups = self.model.param_groups(lr=1.0, weight_decay=cfg.optim.weight_decay)
        for g in groups:
            g["lr_scale"] = g["lr"]
        self.opt = torch.optim.AdamW(groups, betas=tuple(cfg.optim.betas))
        self.params = [p for g in groups for p in g["params"]]
        self.global_step = 0
        if state:
            set_state_dict(
                self.model,
                self.opt,
                model_state_dict=state["model"],
                optim_state_dict=state["optimizer"],
                options=StateDictOptions(full_state_dict=True, ignore_frozen_params=True),
            )
            self.global_step = int(state["global_step"])
            self.log.info("resumed", step=self.global_step, world=env.world, streams=streams)
        self.cache = self._feature_cache()
        self.data.cache = self.cache
        self.data.frames, self.data.size = self.model.cfg.x_encoder.frames, self.model.cfg.x_encoder.image_size
        self.data.shuffle_buffer = cfg.data.shuffle_buffer
        self.data.start = self.global_step * cfg.global_batch // streams
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.bf16
            else torch.autocast("cpu", enabled=False)
        )

    # ------------------------------------------------------------------------------------ setup
    def _read_state(self, resume_from: str | Path | None) -> dict | None:
        if resume_from is None:
            return None
        path = Path(resume_from)
        if path.is_dir() and not (path / STATE_FILE).exists():
            path = latest_checkpoint(path) or path  # an OUT directory: its newest step
        state = load_trainer_state(path / STATE_FILE) if (path / STATE_FILE).exists() else None
        if state is None:
            raise ResumeError(f"no {STATE_FILE} in {path}: nothing to resume from")
        if not {"model", "streams", "global_batch"} <= set(state):
            raise ResumeError(f"{path / STATE_FILE} is not a sharded-recipe state (no model / streams / global_batch)")
        return state

    def _layers(self) -> list[nn.Module]:
        """Every transformer layer that trains: the predictor's and the Y-encoder backbone's."""
        layers = list(self.model.predictor.stack.layers)
        backbone = self.model.y_encoder.backbone
        if any(p.requires_grad for p in backbone.parameters()):
            layers += list(getattr(backbone, "layers", []))
        return layers

    def _checkpoint_layers(self) -> None:
        """Recompute each layer's activations in backward. The layers are transformers'
        GradientCheckpointingLayer: it checkpoints `forward`, not `__call__`, so FSDP2's hooks stay outside."""
        from functools import partial

        from torch.utils.checkpoint import checkpoint

        for layer in self._layers():
            layer.gradient_checkpointing = True
            layer._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)

    def _shard(self) -> None:
        from torch.distributed.fsdp import FSDPModule, fully_shard

        for layer in self._layers():
            fully_shard(layer)
        y = self.model.y_encoder
        y_trains = any(p.requires_grad for p in y.backbone.parameters())
        for part in (self.model.predictor, y if y_trains else y.head):  # a frozen backbone stays whole
            fully_shard(part)
        self.fsdp_units = [m for m in self.model.modules() if isinstance(m, FSDPModule)]

    def _feature_cache(self) -> FeatureCache | None:
        root = self.cfg.data.cache_features
        if not root:
            return None
        xc = self.model.cfg.x_encoder
        geometry = {
            "frames": xc.frames,
            "size": xc.image_size,
            "dtype": str(next(self.model.x_encoder.parameters()).dtype),
        }
        fp = encoder_fingerprint(self.model.x_encoder, geometry)
        self.log.info("feature cache", dir=str(Path(root) / fp))
        return FeatureCache(root, fp, dict(self.data.index.shards), self.cfg.data.max_pending_shards)

    # ------------------------------------------------------------------------------------ the loop
    def batches(self) -> MicroBatches:
        workers = self.cfg.data.num_workers
        loader = DataLoader(
            self.data,
            batch_size=None,
            num_workers=workers,
            multiprocessing_context=loader_context(workers),
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )
        return MicroBatches(iter(loader), self.data.owned(), self.per_stream)

    def run(self) -> ShardedResult:
        cfg, env = self.cfg, self.env
        t0 = time.perf_counter()
        micro = self.batches()
        last_loss, window, t_log = float("nan"), [], time.perf_counter()
        start = self.global_step
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.log.info(
                "training start",
                from_step=start,
                steps=cfg.steps,
                world=env.world,
                streams=self.streams,
                micro_batch=cfg.micro_batch,
                accumulation=self.accum,
                global_batch=cfg.global_batch,
                strategy=cfg.parallel.strategy,
                bf16=self.bf16,
            )
        for step in range(start, cfg.steps):
            lr = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
            for g in self.opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            losses, keys = [], []
            for a in range(self.accum):
                items = next(micro)
                with self._sync(a == self.accum - 1), self.autocast:
                    loss = self.micro_step(items)
                (loss / self.accum).backward()
                losses.append(float(loss.detach()))
                keys += [it["key"] for it in items]
            self._sync_unsharded_grads()
            gnorm = clip_grad_norm(self.params, cfg.optim.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.global_step = step + 1
            last_loss = sum(losses) / len(losses)  # the same on every rank: each micro loss is global
            window.append(last_loss)
            all_keys = gather_objects(keys, env) if cfg.log_samples else []
            if env.is_main:
                with (self.out / "losses.jsonl").open("a") as f:
                    f.write(json.dumps({"step": self.global_step, "loss": last_loss, "lr": lr}) + "\n")
                if cfg.log_samples:
                    with (self.out / "samples.jsonl").open("a") as f:
                        f.write(json.dumps({"step": self.global_step, "keys": all_keys}) + "\n")
            if self.global_step % cfg.log_every == 0 or self.global_step == cfg.steps:
                now = time.perf_counter()
                per_step = (now - t_log) / len(window)
                if env.is_main:
                    self.log.info(
                        "progress",
                        step=f"{self.global_step}/{cfg.steps}",
                        loss=round(sum(window) / len(window), 4),
                        lr=f"{lr:.2e}",
                        grad_norm=round(gnorm, 3),
                        samples_per_s=round(cfg.global_batch / per_step, 1),
                        eta_min=round((cfg.steps - self.global_step) * per_step / 60, 1),
                        cached_pending=self.cache.pending if self.cache else 0,
                        state_mb=round(self.state_bytes() / 2**20, 2),
                    )
                window, t_log = [], now
            if self.global_step % cfg.checkpoint_every == 0 or self.global_step == cfg.steps:
                self.save_checkpoint()
        wall = time.perf_counter() - t0
        self.save_model()
        shutdown(env)
        return ShardedResult(self.out, self.global_step, wall, last_loss)

    def state_bytes(self) -> int:
        """Bytes of trainable state this rank holds between steps: parameters and optimizer moments (a shard's
        local part under FSDP2; gradients, one more parameter's worth, live from backward to the step).
        What DDP replicates and FSDP2 divides by the world size."""
        from torch.distributed.tensor import DTensor

        def local(t: torch.Tensor | None) -> int:
            if t is None:
                return 0
            t = t.to_local() if isinstance(t, DTensor) else t
            return t.numel() * t.element_size()

        moments = sum(local(v) for st in self.opt.state.values() for v in st.values() if isinstance(v, torch.Tensor))
        return sum(local(p) for p in self.params) + moments

    def _sync(self, last: bool):
        """Gradients are reduced across ranks on the last micro-step of a step only."""
        if self.fsdp_units:
            for unit in self.fsdp_units:
                unit.set_requires_gradient_sync(last, recurse=False)
            return nullcontext()
        if isinstance(self.step_module, DistributedDataParallel) and not last:
            return self.step_module.no_sync()
        return nullcontext()

    def _sync_unsharded_grads(self) -> None:
        """Under FSDP the temperature is no FSDP unit's parameter: average its gradient by hand."""
        if not (self.fsdp_units and self.env.enabled):
            return
        from torch.distributed.tensor import DTensor

        for p in self.params:
            if p.grad is not None and not isinstance(p.grad, DTensor):
                dist.all_reduce(p.grad)
                p.grad /= self.env.world

    def encode(self, items: list[dict]) -> torch.Tensor:
        """S_V [B, N, Dv] of a micro-batch: cached rows as stored, the others through the frozen encoder
        (and into the cache)."""
        live = [i for i, it in enumerate(items) if "features" not in it]
        rows: list[torch.Tensor | None] = [it.get("features") for it in items]
        if live:
            video = torch.stack([items[i]["video"] for i in live]).to(self.device, non_blocking=True)  # [b,T,C,H,W]
            with torch.inference_mode():
                s_v = self.model.x_encoder(video)  # [b,N,Dv]
            for j, i in enumerate(live):
                rows[i] = s_v[j]
                if self.cache is not None:
                    self.cache.add(items[i]["shard"], items[i]["key"], s_v[j])
        return torch.stack([r.to(self.device, non_blocking=True) for r in rows])  # [B,N,Dv] (a normal tensor)

    def micro_step(self, items: list[dict]) -> torch.Tensor:
        """InfoNCE of one micro-step over the rows of every rank (the same value on each)."""
        s_v = self.encode(items)
        queries, targets = rows_of(items, self.cfg.neutral_query)
        q = self.model._query_batch(queries, len(items))
        pred, target, temp = self.step_module(s_v, q.ids, q.mask, targets)
        pred_all = gather_rows(pred.float(), self.env)  # [world*B, D]
        target_all = gather_rows(target.float(), self.env)  # [world*B, D]
        groups = keys_to_groups(gather_objects(targets, self.env))  # the same text = the same positive
        return info_nce(pred_all, target_all, temp, groups.to(pred_all.device)).loss

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Full (unsharded) trainable state on rank 0: resumable on any world size."""
        msd, osd = get_state_dict(
            self.model,
            self.opt,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True),
        )
        if not self.env.is_main:
            return
        final = self.out / f"step-{self.global_step:08d}"
        tmp = self.out / f".step-{self.global_step:08d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = {
            "model": msd,
            "optimizer": osd,
            "global_step": self.global_step,
            "streams": self.streams,
            "global_batch": self.cfg.global_batch,
            "config": self.cfg.model_dump(mode="json"),
        }
        torch.save(state, tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a directory appears whole or not at all
        for old in sorted(self.out.glob("step-*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        self.log.info("checkpoint", dir=str(final), step=self.global_step)

    def save_model(self) -> None:
        """The servable model (VLJepa.save layout) and the config, from rank 0."""
        full = None
        if self.fsdp_units:
            full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.env.is_main:
            return
        self.model.cfg.device, self.model.cfg.dtype = self.cfg.model_section().device, self.cfg.model_section().dtype
        self.model.save(self.out, state=full)
        (self.out / "train.yaml").write_text(yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))
        self.log.info("training done", steps=self.global_step, out=str(self.out))


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = sorted(p for p in Path(out_dir).glob("step-*") if (p / STATE_FILE).exists())
    return found[-1] if found else None


def train_sharded(cfg: ShardedTrainConfig, out_dir: str | Path, resume_from: str | Path | None = None) -> ShardedResult:
    return ShardedTrainer(cfg, out_dir, resume_from).run()
