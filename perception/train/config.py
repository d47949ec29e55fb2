"""Every training hyper-parameter, validated at the YAML boundary (configs/train-*.yaml).

The model itself is described by the same `model:` section the other commands read (preset + overrides),
so a trained checkpoint and the service agree on the architecture by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from perception.config import CONFIG_DIR, REPO_ROOT, ConfigError, read_yaml_mapping, validate_config
from perception.model.config import ModelSection

# Bounds of the knobs that size an allocation or a loop (docs/reliability.md "Untrusted files: limits")
MAX_STEPS = 10**9
MAX_BATCH = 65_536  # rows per rank and step
MAX_WORKERS = 256  # data-loader workers per rank
MAX_THREADS = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StageConfig(_Strict):
    """One stage: its own step count, batch, peak LR and cosine schedule (warmup, then decay to min)."""

    steps: int = Field(ge=0, le=MAX_STEPS)
    batch_size: int = Field(ge=2, le=MAX_BATCH, description="per rank; InfoNCE negatives are gathered across ranks")
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0, le=MAX_STEPS)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)
    # Wall-clock cap: the schedule runs on progress = max(step / steps, elapsed / time_budget_s) and the
    # stage ends at progress 1, so a busy machine shortens the stage instead of overrunning it.
    time_budget_s: float | None = Field(default=None, gt=0)


class Stage1Config(StageConfig):
    """Caption pretraining: neutral (empty) query -> caption embedding."""

    neutral_query: str = ""


class Stage2Config(StageConfig):
    """Query-conditioned SFT: captions asked for in words, VQA, and some stage-1 rows mixed in."""

    stage1_fraction: float = Field(default=0.25, ge=0, le=1)  # rows that keep the neutral query
    vqa_fraction: float = Field(default=0.5, ge=0, le=1)  # of the remaining rows: VQA (else caption query)
    caption_queries: list[str] = Field(
        default_factory=lambda: ["what is happening?", "describe the scene.", "what does the shape do?"]
    )
    # Relative weight of each question kind when a VQA row picks one of its clip's questions (a kind left
    # out weighs 1). Empty: uniform over the clip's questions (2 of its 5 are presence questions).
    vqa_kind_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_kinds(self) -> Stage2Config:
        from perception.data.qa import QA_KINDS

        unknown = sorted(set(self.vqa_kind_weights) - set(QA_KINDS))
        if unknown or any(w < 0 for w in self.vqa_kind_weights.values()):
            raise ValueError(
                f"vqa_kind_weights: kinds must be among {QA_KINDS} with weights >= 0; got {self.vqa_kind_weights}"
            )
        return self


class Stage3Config(StageConfig):
    """Y-decoder: (Y-encoder embedding of a caption -> that caption), teacher forced; with
    `predicted_fraction`, that share of the rows gets the predictor's S^_Y of the clip (neutral query)
    instead, and with `segment_mean_fraction` that share gets the mean S^_Y of a segment's windows: what
    the service decodes, which sits off the text-embedding manifold (docs/service.md)."""

    embedding_noise: float = Field(default=0.0, ge=0)  # std of gaussian noise on the unit embedding
    predicted_fraction: float = Field(default=0.0, ge=0, le=1)  # rows fed the predictor's S^_Y instead
    # Rows fed what the service decodes for a segment: the re-normalised mean S^_Y of `segment_windows`
    # windows of one stream segment (perception.data.stream_windows.SegmentWindows), that segment's captions
    # as targets. round(fraction * batch_size) rows per step (at least 1 when > 0); 0: off, no extra cost.
    segment_mean_fraction: float = Field(default=0.0, ge=0, le=1)
    segment_windows: int = Field(default=4, ge=1, le=1024)  # K windows averaged per segment row

    @model_validator(mode="after")
    def _fractions_fit(self) -> Stage3Config:
        if self.predicted_fraction + self.segment_mean_fraction > 1:
            raise ValueError(
                f"predicted_fraction + segment_mean_fraction must be <= 1 (shares of one batch's rows); got "
                f"{self.predicted_fraction} + {self.segment_mean_fraction}"
            )
        return self

    def segment_rows(self) -> int:
        """Decoder rows per step (per rank) fed segment means: the rest are clip rows."""
        if self.segment_mean_fraction <= 0:
            return 0
        return min(self.batch_size, max(1, round(self.segment_mean_fraction * self.batch_size)))


class OptimConfig(_Strict):
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = Field(default=1.0, gt=0)


class DataConfig(_Strict):
    """ShapesWorld training clips, generated on the fly (item i is a pure function of (seed, i))."""

    seed: int = 0
    num_workers: int = Field(default=1, ge=0, le=MAX_WORKERS)
    max_objects: int = Field(default=3, ge=1, le=3)
    # Train on clips 0..pool-1 only, cycling; with num_workers 0 each clip is rendered once and kept in
    # memory (rendering costs about as much CPU as a tiny model's step). None: a fresh clip every time.
    pool: int | None = Field(default=None, ge=1, le=10**8)
    # Share of items cut from streams as the service cuts them (perception.data.stream_windows): 2 s of a
    # 1-8 s segment instead of one whole action per clip. 0: clips only.
    stream_windows: float = Field(default=0.0, ge=0.0, le=1.0)
    window_s: float = Field(default=2.0, gt=0)  # seconds a window's frames span (the service's 8 x 8 / 30 fps)
    # Share of each stage-1/2 batch drawn as contrast groups (perception/train/contrast.py): `contrast_group`
    # pool clips that share two slots and differ in the third, drawn with `contrast_weights`. Needs `pool`.
    contrast_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    contrast_group: int = Field(default=4, ge=2, le=1024)
    contrast_weights: dict[str, float] = Field(default_factory=lambda: {"shape": 1.0})

    @model_validator(mode="after")
    def _contrast_needs_pool(self) -> DataConfig:
        if self.contrast_fraction > 0 and (self.pool is None or self.stream_windows > 0):
            raise ValueError(
                "data.contrast_fraction needs data.pool (groups are drawn from the pool's clips) "
                "and data.stream_windows 0 (stream windows have no single combination)"
            )
        from perception.train.contrast import slot_probabilities

        try:
            slot_probabilities(self.contrast_weights)
        except ValueError as exc:
            raise ValueError(f"data.{exc}") from None
        return self


class TrainConfig(_Strict):
    name: str = "train"
    seed: int = 0
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    stage1: Stage1Config
    stage2: Stage2Config
    stage3: Stage3Config
    log_every: int = Field(default=10, ge=1, le=MAX_STEPS)
    checkpoint_every: int = Field(default=200, ge=1, le=MAX_STEPS)
    threads: int | None = Field(
        default=None, ge=1, le=MAX_THREADS
    )  # torch intra-op threads per rank (None: torch default)

    @model_validator(mode="after")
    def _some_steps(self) -> TrainConfig:
        if self.stage1.steps + self.stage2.steps + self.stage3.steps == 0:
            raise ValueError("every stage has 0 steps: nothing to train")
        return self

    def stages(self) -> list[tuple[str, StageConfig]]:
        return [("stage1", self.stage1), ("stage2", self.stage2), ("stage3", self.stage3)]

    @property
    def total_steps(self) -> int:
        return sum(s.steps for _, s in self.stages())


PRESET_FILES = {
    "tiny": "train-tiny.yaml",
    "tiny-gpu": "train-tiny-gpu.yaml",
    "tiny-vlm": "train-tiny-vlm.yaml",
    "vjepa2-vitl": "train-vjepa2-vitl.yaml",
}


# -- the other two recipes' configs: one module for every recipe, so choosing one imports no trainer --------


class FrozenStage(_Strict):
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)


class FrozenStage2(FrozenStage):
    stage1_fraction: float = Field(default=0.25, ge=0, le=1)
    vqa_fraction: float = Field(default=0.6, ge=0, le=1)
    caption_queries: list[str] = Field(
        default_factory=lambda: ["what is happening?", "describe the scene.", "what does the shape do?"]
    )


class FrozenTrainConfig(_Strict):
    """configs/train-tiny-vlm.yaml: one learner on the source checkpoint's frozen X-encoder."""

    name: str = "train-frozen"
    learner: Literal["vlm", "jepa"]
    source: str = "checkpoints/tiny"  # the VL-JEPA checkpoint whose X-encoder (and text side) is frozen
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    size_ratio: float = Field(default=2.0, gt=0)  # vlm: trainable parameters / the predictor's (paper: 1B / 0.5B)
    pool: int = Field(default=16384, ge=1)  # training clips encoded once and cycled
    data_seed: int = 0
    samples: int = Field(ge=2)  # the budget: rows seen in stages 1 + 2 together
    batch_size: int = Field(default=64, ge=2, le=MAX_BATCH)
    stage1_share: float = Field(default=0.64, ge=0, le=1)  # of the steps (the tiny recipe: 960 s of 1500 s)
    stage1: FrozenStage = Field(default_factory=lambda: FrozenStage(lr=2e-3, warmup_steps=50))
    stage2: FrozenStage2 = Field(default_factory=lambda: FrozenStage2(lr=1e-3, warmup_steps=20))
    optim: OptimConfig = Field(default_factory=OptimConfig)
    log_every: int = Field(default=25, ge=1)

    @property
    def steps(self) -> int:
        return max(1, self.samples // self.batch_size)

    def stage_steps(self) -> tuple[int, int]:
        s1 = round(self.steps * self.stage1_share)
        return s1, self.steps - s1

    def source_path(self) -> Path:
        p = Path(self.source)
        return p if p.is_absolute() else REPO_ROOT / p


class ShardData(_Strict):
    shards: str | None = None  # a directory written by `perception data shard` (or `--data`)
    # Fixed sample streams (perception/train/sample_streams.py); None: ranks x workers of the first run.
    # A multiple of every ranks x workers the run will be resumed on.
    streams: int | None = Field(default=None, ge=1)
    num_workers: int = Field(default=2, ge=0, le=MAX_WORKERS)
    shuffle_buffer: int = Field(default=256, ge=1)
    cache_features: str | None = None  # a directory for the frozen X-encoder's features (None: off)
    max_pending_shards: int = Field(default=64, ge=1)  # shards half-encoded in memory before the oldest is dropped


class Parallel(_Strict):
    # ddp: the trainable state replicated (fits an H200 at vitl: docs/training.md); fsdp: FSDP2 fully_shard
    # of every transformer layer, the predictor and the Y-encoder (for GPUs that it does not fit)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    activation_checkpointing: bool = False


class ShardedTrainConfig(_Strict):
    recipe: Literal["sharded"]
    name: str = "sharded"
    seed: int = 0
    model: dict = Field(default_factory=dict)  # the `model:` section (perception.model.config.ModelSection)
    data: ShardData = Field(default_factory=ShardData)
    parallel: Parallel = Field(default_factory=Parallel)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    optim: OptimConfig = Field(default_factory=OptimConfig)
    steps: int = Field(ge=1)
    global_batch: int = Field(ge=2, description="samples per optimizer step, all ranks together")
    micro_batch: int = Field(ge=1, description="samples per rank per forward")
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)
    neutral_query: str = ""  # the query of caption samples (a VQA sample brings its own)
    log_every: int = Field(default=10, ge=1)
    checkpoint_every: int = Field(default=500, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    log_samples: bool = False  # OUT/samples.jsonl: every step's sample keys (tests, debugging)

    @model_validator(mode="after")
    def _model_section(self) -> ShardedTrainConfig:
        ModelSection.model_validate(self.model)
        return self

    def model_section(self) -> ModelSection:
        return ModelSection.model_validate(self.model)


# -- the text-only decoder recipe (perception/train/text_decoder.py) ----------------------------------------


class DecoderSizes(BaseModel):
    """The builtin decoder made for a checkpoint that has none (YDecoderConfig fields, bounded: a file sizes it)."""

    model_config = ConfigDict(extra="forbid")

    prefix_tokens: int = Field(8, ge=1, le=64)
    hidden: int = Field(512, ge=8, le=8192)
    layers: int = Field(4, ge=1, le=64)
    heads: int = Field(8, ge=1, le=128)
    intermediate: int = Field(1536, ge=8, le=65_536)
    max_tokens: int = Field(32, ge=4, le=512)


class TextDecoderConfig(BaseModel):
    """configs/train-text-decoder.yaml."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    recipe: Literal["text-decoder"] = "text-decoder"  # how load_train_config tells this file from the others
    steps: int = Field(2000, ge=1, le=MAX_STEPS)
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    lr: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(50, ge=0, le=MAX_STEPS)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    embedding_noise: float = Field(0.1, ge=0, le=10)  # std of the jitter added to each unit S_Y (then renormalised)
    time_budget_s: float | None = Field(None, gt=0)  # stop early when spent (the schedule follows it)
    max_texts: int = Field(2_000_000, ge=1, le=100_000_000)  # lines read from --texts
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)  # torch CPU threads; None: torch's default
    dtype: str = "float32"  # the decoder trains in float32; the checkpoint is saved as trained
    log_every: int = Field(50, ge=1, le=MAX_STEPS)
    decoder: DecoderSizes = Field(default_factory=DecoderSizes)  # built when the checkpoint has no decoder


def load_text_decoder_config(path: str | Path | None, overrides: dict | None = None) -> TextDecoderConfig:
    """configs/train-text-decoder.yaml (or `path`, which must be a text-decoder recipe) with dotted overrides."""
    cfg = load_train_config(path or CONFIG_DIR / "train-text-decoder.yaml", overrides=overrides)
    if not isinstance(cfg, TextDecoderConfig):
        raise ConfigError(f"{path}: not a text-decoder recipe (set `recipe: text-decoder`)")
    return cfg


def load_train_config(path: str | Path | None = None, preset: str = "tiny", overrides: dict | None = None):
    """Read a training YAML (default: the preset's file in configs/), apply dotted overrides, validate.
    A file with a `learner:` key trains one learner on a frozen X-encoder (perception/train/frozen.py:
    FrozenTrainConfig); `recipe: sharded` the contrastive recipe on video shards (perception/train/sharded.py);
    any other is the three-stage VL-JEPA recipe on ShapesWorld (TrainConfig)."""
    if path is None:
        if preset not in PRESET_FILES:
            raise ConfigError(f"unknown training preset {preset!r}; valid: {sorted(PRESET_FILES)}")
        path = CONFIG_DIR / PRESET_FILES[preset]
    path = Path(path)
    raw = read_yaml_mapping(path, "training config")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    if raw.get("recipe") == "text-decoder":
        return validate_config(TextDecoderConfig, raw, path, "training config")
    if raw.get("recipe") == "sharded":
        return validate_config(ShardedTrainConfig, raw, path, "training config")
    if "learner" in raw:
        return validate_config(FrozenTrainConfig, raw, path, "training config")
    return validate_config(TrainConfig, raw, path, "training config")
