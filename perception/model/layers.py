"""A stack of transformers Llama decoder layers driven with an explicit 4-D additive attention mask.

Both the predictor (bidirectional mask) and the builtin Y-decoder (causal mask) use it. Passing the mask
ourselves is what disables Llama's causal masking: with a 4-D float mask, the SDPA path runs with
is_causal=False, and we also clear `is_causal` on each attention module so no backend re-enables it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import LlamaConfig
from transformers.cache_utils import Cache
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding


def llama_config(
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    rope_theta: float,
    vocab_size: int = 1,
    hf_config: dict[str, Any] | None = None,
) -> LlamaConfig:
    """LlamaConfig from our dims, or from a recorded/pretrained config dict with `layers` layers."""
    if hf_config is not None:
        cfg = LlamaConfig.from_dict({**hf_config, "num_hidden_layers": layers})
    else:
        cfg = LlamaConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            intermediate_size=intermediate,
            vocab_size=vocab_size,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,  # ids live in our tokenizers, not here
        )
    cfg._attn_implementation = "sdpa"
    return cfg


def bidirectional_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """keep [B,S] bool (True = real token) -> additive mask [B,1,S,S]: every query sees every real key."""
    B, S = keep.shape
    neg = torch.finfo(dtype).min
    mask = torch.zeros(B, 1, S, S, dtype=dtype, device=keep.device)
    return mask.masked_fill(~keep[:, None, None, :], neg)  # [B,1,S,S]


def causal_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """keep [B,S] bool -> additive mask [B,1,S,S]: position i sees real keys j <= i."""
    B, S = keep.shape
    neg = torch.finfo(dtype).min
    future = torch.ones(S, S, dtype=torch.bool, device=keep.device).triu(1)  # [S,S] True above diagonal
    blocked = future[None, None] | ~keep[:, None, None, :]  # [B,1,S,S]
    # a fully blocked row (a PAD query before any real key) would softmax to NaN: let it see itself
    blocked = blocked & ~torch.eye(S, dtype=torch.bool, device=keep.device)[None, None]
    return torch.zeros(B, 1, S, S, dtype=dtype, device=keep.device).masked_fill(blocked, neg)


class LlamaStack(nn.Module):
    """Llama decoder layers + final RMSNorm; the caller supplies embeddings and the 4-D mask."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.config = cfg
        self.layers = nn.ModuleList(LlamaDecoderLayer(cfg, layer_idx=i) for i in range(cfg.num_hidden_layers))
        for layer in self.layers:
            layer.self_attn.is_causal = False  # the mask we pass decides; never an implicit causal mask
        self.norm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(cfg)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, mask4d: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        """x [B,S,H], mask4d [B,1,S,P+S] additive -> [B,S,H], where P is what `cache` already holds (0
        without one). Positions are P..P+S-1 (right padding keeps the real tokens' positions independent
        of how much padding follows). With a cache, this call's keys/values are appended to it: a prefix
        run once serves every continuation (generation, scoring many candidates)."""
        B, S, H = x.shape
        P = cache.get_seq_length() if cache is not None else 0
        assert mask4d.shape == (B, 1, S, P + S), f"mask {tuple(mask4d.shape)} does not match x {tuple(x.shape)} + {P}"
        position_ids = torch.arange(P, P + S, device=x.device)[None].expand(B, S)  # [B,S]
        pos = self.rotary_emb(x, position_ids=position_ids)  # (cos, sin) each [B,S,head_dim]
        for layer in self.layers:
            x = layer(
                x, attention_mask=mask4d.to(x.dtype), position_ids=position_ids, position_embeddings=pos, cache=cache
            )
        return self.norm(x)  # [B,S,H]
