"""Bidirectional InfoNCE between predicted (S^_Y) and target (S_Y) embeddings.

Multi-positive: when several rows share the same target text (same `groups` id), every one of those
targets counts as correct for each of those predictions; the loss is -log of the softmax mass on the
correct set (it reduces to the usual cross-entropy when all groups differ). The random baseline is ln(B):
a model that has learned nothing scores about that; staying there means no learning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, mean of the two directions
    pred_to_target: torch.Tensor  # scalar: predictions classify their targets
    target_to_pred: torch.Tensor  # scalar: targets classify their predictions
    baseline: float  # ln(B): chance level of either direction
    spread: float  # mean off-diagonal cosine between predictions: -> 1.0 means collapse
    temperature: float

    def as_log_dict(self) -> dict[str, float]:
        return {
            "loss": float(self.loss.detach()),
            "p2t": float(self.pred_to_target.detach()),
            "t2p": float(self.target_to_pred.detach()),
            "ln_b": self.baseline,
            "spread": self.spread,
            "temperature": self.temperature,
        }


def groups_from_texts(texts: list[str]) -> torch.Tensor:
    """Equal texts -> equal group id: [B] long."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(t, len(ids)) for t in texts], dtype=torch.long)


def embedding_spread(x: torch.Tensor) -> float:
    """Mean pairwise cosine similarity between distinct rows of x [B,D] (1.0 = collapsed)."""
    B = x.shape[0]
    if B < 2:
        return 0.0
    z = F.normalize(x.detach().float(), dim=-1)
    sim = z @ z.T  # [B,B]
    return float((sim.sum() - sim.diagonal().sum()) / (B * (B - 1)))


def info_nce(
    pred: torch.Tensor, target: torch.Tensor, temperature: torch.Tensor | float, groups: torch.Tensor | None = None
) -> LossOutput:
    """pred, target [B,D] (any norm; L2-normalised here); temperature > 0; groups [B] or None."""
    B, D = pred.shape
    assert target.shape == (B, D), f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
    p = F.normalize(pred.float(), dim=-1)
    t = F.normalize(target.float(), dim=-1)
    temp = temperature if isinstance(temperature, torch.Tensor) else torch.tensor(float(temperature))
    logits = p @ t.T / temp.float()  # [B,B] row i: prediction i against every target
    if groups is None:
        positive = torch.eye(B, dtype=torch.bool, device=pred.device)
    else:
        g = groups.to(pred.device)
        positive = g[:, None] == g[None, :]  # [B,B]
    neg_inf = torch.finfo(logits.dtype).min

    def direction(lg: torch.Tensor) -> torch.Tensor:
        # -log sum_{j positive} softmax(lg_i)_j, averaged over rows
        pos = torch.logsumexp(lg.masked_fill(~positive, neg_inf), dim=-1)  # [B]
        return (torch.logsumexp(lg, dim=-1) - pos).mean()

    p2t = direction(logits)
    t2p = direction(logits.T)  # positive is symmetric, so the same mask applies
    return LossOutput(
        loss=(p2t + t2p) / 2,
        pred_to_target=p2t,
        target_to_pred=t2p,
        baseline=math.log(B),
        spread=embedding_spread(pred),
        temperature=float(temp.detach()),
    )
