"""Frozen Y-encoder features, computed once per distinct text.

With a frozen text backbone (the tiny preset's MiniLM) only the Y-encoder's linear head trains, and the
training texts come from a small closed vocabulary, so the backbone runs once per distinct string. The
pooling mirrors YEncoder.forward (mean over real tokens, or CLS) and is checked against it on first use.
"""

from __future__ import annotations

import torch

from perception.model import VLJepa


class PooledTextCache:
    def __init__(self, model: VLJepa) -> None:
        if not model.cfg.y_encoder.frozen:
            raise ValueError("the pooled-feature cache is only valid for a frozen Y-encoder backbone")
        self.model = model
        self._feats: dict[str, torch.Tensor] = {}
        self._checked = False

    @torch.no_grad()
    def _compute(self, texts: list[str]) -> torch.Tensor:
        ye = self.model.y_encoder
        tok = ye.tokenize(texts).to(self.model.device)
        h = ye.backbone(input_ids=tok.ids, attention_mask=tok.mask).last_hidden_state  # [B,L,Dy]
        if ye.cfg.pooling == "cls":
            return h[:, 0].float()
        w = tok.mask.to(h.dtype).unsqueeze(-1)  # [B,L,1]
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)  # [B,Dy]
        if not self._checked:  # the cache must equal what the model itself computes
            ref = ye(tok)
            assert torch.allclose(ye.head(pooled), ref, atol=1e-4), "pooled cache disagrees with YEncoder"
            self._checked = True
        return pooled.float()

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """texts -> [B, Dy] pooled backbone features (no gradient; the head is applied by the caller)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._feats]
        if todo:
            self._feats.update(zip(todo, self._compute(todo)))
        return torch.stack([self._feats[t] for t in texts]).to(self.model.device)
