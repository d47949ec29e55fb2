"""Predictor: (S_V, query tokens) -> S^_Y, the predicted target-text embedding.

Wiring (paper §3): visual tokens projected Dv -> Dp, then [visual tokens; query tokens] through Llama
layers with the causal mask disabled (explicit bidirectional 4-D mask, PAD keys masked), mean-pooled over
non-PAD positions, linear head Dp -> D.

Pooling (`pool`): "all" (default, the paper's "average over non-[PAD] tokens") averages every visual token
and every real query token: with bidirectional attention each visual token's output is already conditioned
on the query, and the average keeps all of them in the gradient path. "query" averages only the real query
tokens, a CLS-like readout that weights the question more; the tiny preset can try it from YAML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from perception.model.config import PredictorConfig
from perception.model.layers import LlamaStack, bidirectional_mask, llama_config
from perception.model.weights import load_tensors, read_hf_config, resolve_source, tensor_keys


@dataclass
class PredictorOutput:
    embedding: torch.Tensor  # [B, D] S^_Y before L2 normalisation
    hidden: torch.Tensor  # [B, N+L, Dp] last layer, after the final norm


class QueryEmbedder(nn.Module):
    """Token ids -> [B,L,Dp]: the predictor's own table, or a shared frozen table + trainable projection."""

    def __init__(self, cfg: PredictorConfig, vocab_size: int, shared_table: nn.Embedding | None):
        super().__init__()
        self._shared = [shared_table] if cfg.token_embeddings == "y_encoder" else []  # not registered:
        # the table belongs to the Y-encoder (saved/loaded with it), we only read it
        if cfg.token_embeddings == "y_encoder":
            if shared_table is None:
                raise ValueError("predictor.token_embeddings='y_encoder' needs the Y-encoder's word embeddings")
            self.proj = nn.Linear(shared_table.embedding_dim, cfg.hidden)
            self.table = None
        else:
            self.proj = None
            self.table = nn.Embedding(vocab_size, cfg.hidden)
            nn.init.normal_(self.table.weight, std=0.02)
            self.table.weight.requires_grad_(cfg.train_token_embeddings)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            return self.table(ids)  # [B,L,Dp]
        with torch.no_grad():
            words = self._shared[0](ids)  # [B,L,Dw] frozen
        return self.proj(words)  # [B,L,Dp]


class Predictor(nn.Module):
    def __init__(
        self,
        cfg: PredictorConfig,
        visual_dim: int,
        embed_dim: int,
        vocab_size: int,
        shared_table: nn.Embedding | None = None,
        load_weights: bool = True,
    ):
        super().__init__()
        path = None
        if cfg.weights and load_weights:
            path = resolve_source(cfg.weights, "predictor")
            cfg.hf_config = read_hf_config(path)
        hf = llama_config(
            cfg.hidden,
            cfg.layers,
            cfg.heads,
            cfg.kv_heads,
            cfg.intermediate,
            cfg.rope_theta,
            vocab_size=vocab_size,
            hf_config=cfg.hf_config,
        )
        cfg.hidden, cfg.heads, cfg.kv_heads = hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads
        cfg.intermediate = hf.intermediate_size
        self.cfg = cfg
        self.visual_proj = nn.Linear(visual_dim, cfg.hidden)  # Dv -> Dp
        self.query_embed = QueryEmbedder(cfg, hf.vocab_size if cfg.hf_config else vocab_size, shared_table)
        self.stack = LlamaStack(hf)
        self.head = nn.Linear(cfg.hidden, embed_dim)  # Dp -> D
        if path is not None:
            self._load_last_layers(path)

    def _load_last_layers(self, path) -> None:
        """Copy the LM's last `layers` decoder layers, final norm (and token table if own) into ours."""
        keys = tensor_keys(path)
        prefix = "model." if any(k.startswith("model.layers.") for k in keys) else ""
        total = int(self.cfg.hf_config["num_hidden_layers"])
        first = total - self.cfg.layers
        if first < 0:
            raise ValueError(f"predictor.layers={self.cfg.layers} but {path} has only {total} layers")
        rename: dict[str, str] = {}
        for k in keys:
            if not k.startswith(prefix + "layers."):
                continue
            idx, rest = k[len(prefix + "layers.") :].split(".", 1)
            if int(idx) >= first:
                rename[k] = f"stack.layers.{int(idx) - first}.{rest}"
        rename[prefix + "norm.weight"] = "stack.norm.weight"
        if self.query_embed.table is not None:
            rename[prefix + "embed_tokens.weight"] = "query_embed.table.weight"
        state = load_tensors(path, rename)
        missing, unexpected = self.load_state_dict(state, strict=False)
        assert not unexpected, unexpected

    def forward(self, s_v: torch.Tensor, query_ids: torch.Tensor, query_mask: torch.Tensor) -> PredictorOutput:
        """s_v [B,N,Dv], query_ids/query_mask [B,L] (right-padded; mask 1 = real token) -> S^_Y [B,D]."""
        B, N, _ = s_v.shape
        L = query_ids.shape[1]
        assert query_ids.shape == query_mask.shape == (B, L), "query ids/mask must both be [B,L] matching S_V"
        if s_v.is_inference() and not torch.is_inference_mode_enabled():
            s_v = s_v.clone()  # S_V cached by encode_video (inference mode) may feed a training step
        v = self.visual_proj(s_v)  # [B,N,Dp]
        q = self.query_embed(query_ids).to(v.dtype)  # [B,L,Dp]
        x = torch.cat([v, q], dim=1)  # [B,N+L,Dp] visual tokens first, then the query
        qkeep = query_mask.bool()
        keep = torch.cat([torch.ones(B, N, dtype=torch.bool, device=s_v.device), qkeep], dim=1)  # [B,N+L]
        h = self.stack(x, bidirectional_mask(keep, x.dtype))  # [B,N+L,Dp]
        pool = keep.clone()
        if self.cfg.pool == "query":
            pool[:, :N] = False
        w = pool.to(h.dtype).unsqueeze(-1)  # [B,N+L,1]
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)  # [B,Dp]
        return PredictorOutput(embedding=self.head(pooled), hidden=h)
