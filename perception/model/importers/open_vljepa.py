"""open-vljepa's `best.pt` -> our checkpoint directory, with the reference's forward semantics.

The reference (github.com/dion-jy/open-vljepa, openvljepa/models/*.py, scripts/eval.py) is our vitl
architecture: frozen V-JEPA 2 -> Linear(1024 -> 2048) -> the last N Llama-3.2-1B layers run bidirectionally
over [visual; query] (PAD keys masked) -> final RMSNorm -> mean over visual + real query positions ->
Linear(2048 -> 1536); EmbeddingGemma -> mean over real tokens -> Linear(768 -> 1536). Its file holds
`model_state_dict` without the frozen V-JEPA 2 (`x_encoder.model.*`) and a `config` of plain values.

Where our preset's defaults differ, the checkpoint we write records the reference's choices:
8 frames per clip at integer linspace positions, torchvision's Resize + CenterCrop at 256 px, queries and
targets padded to max_length (64) on the tokenizer's side, Llama 3.2's reserved pad token, the evaluation
prompt "Describe the video." as the captioning query, a fixed temperature 0.07, and no trained Y-decoder
(captions by retrieval from a phrase bank).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from perception.model.config import PredictorConfig, VLJepaConfig, XEncoderConfig, YDecoderConfig, YEncoderConfig
from perception.model.importers import ImportRefused
from perception.model.importers.torch_file import load_data
from perception.model.weights import load_tensors, read_hf_config, resolve_source, tensor_keys

RETRIEVAL_PROMPT = "Describe the video."  # scripts/eval.py DEFAULT_RETRIEVAL_PROMPT
TEMPERATURE = 0.07
MAX_TEXT_TOKENS = 512  # the reference's largest max_query_len / max_caption_len
MAX_FRAMES = 64  # V-JEPA 2 fpc64


def _layer_rename(key: str) -> str | None:
    """A reference state-dict name -> ours (None: not a name this format has)."""
    for src, dst in (
        ("predictor.vis_proj.", "predictor.visual_proj."),
        ("predictor.out_proj.", "predictor.head."),
        ("predictor.layers.", "predictor.stack.layers."),
        ("predictor.norm.", "predictor.stack.norm."),
        ("y_encoder.model.", "y_encoder.backbone."),
        ("y_encoder.projector.", "y_encoder.head."),
    ):
        if key.startswith(src):
            return dst + key[len(src) :]
    return None


def _setting(cfg: dict, section: str, key: str, default: Any) -> Any:
    value = cfg.get(section, {}).get(key, default) if isinstance(cfg.get(section), dict) else default
    return default if value is None else value


def _int_setting(cfg: dict, section: str, key: str, default: int, lo: int, hi: int) -> int:
    value = _setting(cfg, section, key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ImportRefused(f"config.{section}.{key} = {value!r}: expected an integer in [{lo}, {hi}]")
    return value


def reference_config(ref: dict, x_dir: Path, lm_dir: Path, text_dir: Path, layers: int, embed_dim: int) -> VLJepaConfig:
    """Our config for the reference model: sizes from the three pretrained dirs, the reference's settings."""
    if _setting(ref, "encoder", "output_dim", None) is not None:
        raise ImportRefused("config.encoder.output_dim is set: only the reference's raw V-JEPA 2 output is supported")
    if _setting(ref, "predictor", "disable_causal_mask", True) is not True:
        raise ImportRefused(
            "config.predictor.disable_causal_mask is false: only the bidirectional predictor is supported"
        )
    x_hf, lm_hf, y_hf = read_hf_config(x_dir), read_hf_config(lm_dir), read_hf_config(text_dir)
    if x_hf.get("model_type") != "vjepa2":
        raise ImportRefused(f"--x-encoder {x_dir}: model_type {x_hf.get('model_type')!r}, expected 'vjepa2'")
    if lm_hf.get("model_type") != "llama":
        raise ImportRefused(f"--query-lm {lm_dir}: model_type {lm_hf.get('model_type')!r}, expected 'llama'")
    frames = _int_setting(ref, "data", "num_frames", 8, 1, MAX_FRAMES)
    tubelet = int(x_hf.get("tubelet_size", 2))
    if frames % tubelet:
        raise ImportRefused(f"config.data.num_frames = {frames} is not a multiple of the tubelet size {tubelet}")
    size = _int_setting(ref, "data", "image_size", 256, 16, 1024)
    if size != int(x_hf.get("crop_size", size)):
        raise ImportRefused(f"config.data.image_size = {size} but {x_dir} has crop_size {x_hf.get('crop_size')}")
    total = int(lm_hf["num_hidden_layers"])
    if layers > total:
        raise ImportRefused(f"the file has {layers} predictor layers but --query-lm {lm_dir} has only {total}")
    return VLJepaConfig(
        preset="open-vljepa",
        embed_dim=embed_dim,
        temperature=TEMPERATURE,
        learn_temperature=False,
        x_encoder=XEncoderConfig(
            image_size=size,
            patch_size=int(x_hf.get("patch_size", 16)),
            frames=frames,
            tubelet=tubelet,
            hidden=int(x_hf["hidden_size"]),
            layers=int(x_hf["num_hidden_layers"]),
            heads=int(x_hf["num_attention_heads"]),
            frozen=True,
            weights=str(x_dir),
            frame_index="floor",
            resize="torchvision",
            hf_config=x_hf,
        ),
        predictor=PredictorConfig(
            hidden=int(lm_hf["hidden_size"]),
            layers=layers,
            heads=int(lm_hf["num_attention_heads"]),
            kv_heads=int(lm_hf.get("num_key_value_heads", lm_hf["num_attention_heads"])),
            intermediate=int(lm_hf["intermediate_size"]),
            max_query_tokens=_int_setting(ref, "data", "max_query_len", 64, 1, MAX_TEXT_TOKENS),
            pool="all",
            weights=str(lm_dir),
            token_embeddings="own",
            train_token_embeddings=False,
            query_padding="max_length",
            default_query=RETRIEVAL_PROMPT,
            hf_config=lm_hf,
        ),
        y_encoder=YEncoderConfig(
            source=str(text_dir),
            pooling="mean",
            frozen=False,
            lr_mult=float(_setting(ref, "y_encoder", "lr_multiplier", 0.05)),
            max_tokens=_int_setting(ref, "data", "max_caption_len", 64, 1, MAX_TEXT_TOKENS),
            padding="max_length",
            hf_config=y_hf,
        ),
        y_decoder=YDecoderConfig(kind="retrieval"),
    )


def _state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    if not isinstance(obj, dict) or not isinstance(obj.get("model_state_dict"), dict):
        raise ImportRefused(f"{path}: not an open-vljepa checkpoint (no 'model_state_dict' dict)")
    sd = obj["model_state_dict"]
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ImportRefused(f"{path}: model_state_dict entry {k!r} is not a named tensor")
    ref = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    return sd, ref


def _predictor_layers(sd: dict[str, torch.Tensor]) -> int:
    idx = {int(m.group(1)) for k in sd if (m := re.match(r"predictor\.layers\.(\d+)\.", k))}
    if not idx:
        raise ImportRefused("the file has no predictor.layers.* tensors")
    if idx != set(range(len(idx))):
        raise ImportRefused(f"predictor layers {sorted(idx)} are not numbered 0..{len(idx) - 1}")
    return len(idx)


def map_state(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Our names for every tensor of the file, and the predictor's token table (checked, not stored)."""
    mapped: dict[str, torch.Tensor] = {}
    table = None
    for key, value in sd.items():
        if key == "predictor.embed_tokens.weight":
            table = value
            continue
        if key.startswith("x_encoder."):
            raise ImportRefused(
                f"unexpected tensor {key}: the reference stores no X-encoder tensors (frozen V-JEPA 2 is reloaded "
                "from --x-encoder; a projector after it means encoder.output_dim was set, which is not supported)"
            )
        if re.search(r"rotary_emb\.(original_)?inv_freq$", key):
            continue  # RoPE frequencies: recomputed from the LM's config
        ours = _layer_rename(key)
        if ours is None:
            raise ImportRefused(f"unexpected tensor {key}: not a name of the open-vljepa format")
        mapped[ours] = value
    return mapped, table


def _check_against(model: torch.nn.Module, mapped: dict[str, torch.Tensor], external: dict[str, str]) -> None:
    """Every stored tensor of our architecture comes from the file with its shape; nothing else does."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not any(k.startswith(p) for p in external)}
    expected.pop("log_temperature", None)  # fixed 0.07 in the reference: set here, not read
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise ImportRefused(f"missing tensor(s) for {', '.join(missing[:5])} (the file lacks them)")
    extra = sorted(set(mapped) - set(expected))
    if extra:
        raise ImportRefused(f"unexpected tensor(s) {', '.join(extra[:5])}: our architecture has no such names")
    for k, want in expected.items():
        got = tuple(mapped[k].shape)
        if got != want:
            raise ImportRefused(f"tensor {k}: shape {got} in the file, {want} expected from the pretrained parts")
        if not mapped[k].is_floating_point():
            raise ImportRefused(f"tensor {k}: dtype {mapped[k].dtype}, expected floating point")
        if not bool(torch.isfinite(mapped[k]).all()):
            raise ImportRefused(f"tensor {k}: has NaN or infinite values")


def _check_table(table: torch.Tensor | None, lm_dir: Path) -> None:
    """The predictor's frozen token table must be the query LM's own: it is reloaded from there."""
    if table is None:
        raise ImportRefused("missing tensor predictor.embed_tokens.weight (the query token table)")
    keys = tensor_keys(lm_dir)
    name = "model.embed_tokens.weight" if "model.embed_tokens.weight" in keys else "embed_tokens.weight"
    theirs = load_tensors(lm_dir, {name: "t"})["t"]
    if tuple(theirs.shape) != tuple(table.shape):
        raise ImportRefused(
            f"tensor predictor.embed_tokens.weight: shape {tuple(table.shape)} in the file, "
            f"{tuple(theirs.shape)} in --query-lm {lm_dir}"
        )
    if not torch.equal(theirs.to(table.dtype), table):
        raise ImportRefused(
            f"tensor predictor.embed_tokens.weight differs from --query-lm {lm_dir}'s token table: "
            "a different Llama than the one the checkpoint was trained on"
        )


def import_checkpoint(file: str | Path, out: str | Path, x_encoder: str, query_lm: str, text_encoder: str) -> dict:
    """Write our checkpoint for open-vljepa's `file` to `out`; ImportRefused naming any mismatch."""
    from perception.model.vljepa import VLJepa

    path = Path(file)
    x_dir = resolve_source(x_encoder, "--x-encoder").resolve()
    lm_dir = resolve_source(query_lm, "--query-lm").resolve()
    text_dir = resolve_source(text_encoder, "--text-encoder").resolve()
    obj = load_data(path)
    sd, ref = _state_dict(obj, path)
    mapped, table = map_state(sd)
    embed_dim = mapped.get("predictor.head.weight", torch.empty(0, 0)).shape[0]
    cfg = reference_config(ref, x_dir, lm_dir, text_dir, _predictor_layers(sd), embed_dim)
    with torch.device("meta"):  # shapes only: nothing of the real size is allocated to check the file
        model = VLJepa(cfg, load_weights=False)
    external = model.external_parts()
    _check_against(model, mapped, external)
    _check_table(table, lm_dir)
    safetensors_keys = set(tensor_keys(x_dir))
    want_x = {k[len("x_encoder.backbone.") :] for k in model.state_dict() if k.startswith("x_encoder.backbone.")}
    if not want_x <= safetensors_keys:
        raise ImportRefused(f"--x-encoder {x_dir}: missing V-JEPA 2 tensors {sorted(want_x - safetensors_keys)[:5]}")
    mapped["log_temperature"] = torch.tensor(math.log(TEMPERATURE))
    model.save(out, state=mapped)
    return {
        "out": str(out),
        "format": "open-vljepa",
        "tensors": len(mapped),
        "predictor_layers": cfg.predictor.layers,
        "embed_dim": embed_dim,
        "frames": cfg.x_encoder.frames,
        "image_size": cfg.x_encoder.image_size,
        "epoch": obj.get("epoch") if isinstance(obj.get("epoch"), int) else None,
    }
