"""One sliding-window pass for a fixed query: clips -> (S_V, S^_Y), optionally TorchScript-traced.

Why trace: the tiny model's pass is a few hundred small ops, mostly Python dispatch. A traced graph runs
in C++ with the GIL released, so a node's event loop (ingesting frames on another thread) no longer
stalls the model between ops, and the pass itself is ~1.3x faster on CPU. The captioning query is baked
in (only S_V varies). One trace per input shape, since the batch size varies with the cameras due; each
new trace is checked against the eager pass on its first input, and any trace error or mismatch falls
back to eager for that shape, logged, so tracing can never change what the service publishes.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bus.logs import get_logger

log = get_logger("model.window")


class _Pass(nn.Module):
    """What gets traced: X-encoder + predictor with the query's tokens as buffers."""

    def __init__(self, model: Any, query: str) -> None:
        super().__init__()
        self.x_encoder, self.predictor = model.x_encoder, model.predictor
        q = model.tokenize_queries([query]).to(model.device)
        self.register_buffer("ids", q.ids, persistent=False)  # [1,L]
        self.register_buffer("mask", q.mask, persistent=False)  # [1,L]

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_v = self.x_encoder(clips)  # [B,N,Dv]
        B = s_v.shape[0]
        out = self.predictor(s_v, self.ids.expand(B, -1), self.mask.expand(B, -1)).embedding  # [B,D]
        return s_v, F.normalize(out.float(), dim=-1)  # S_V [B,N,Dv], S^_Y [B,D]


class WindowRunner:
    """`runner(clips)` with clips uint8 [B,T,3,H,W] -> (S_V [B,N,Dv], S^_Y [B,D] float32)."""

    def __init__(self, model: Any, query: str = "", jit: bool = True, atol: float | None = None) -> None:
        self.model, self.query, self.jit = model, query, jit
        self.eager = _Pass(model, query).eval()
        # bf16 on GPU differs from eager in the last bits once ops are fused; float32 should match closely
        self.atol = atol if atol is not None else (1e-4 if model.dtype == torch.float32 else 2e-2)
        self.traced: dict[tuple[int, ...], Any] = {}  # input shape -> traced module, or None = eager

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clips = clips.to(self.model.device)
        with torch.no_grad():
            if self.jit and tuple(clips.shape) not in self.traced:
                return self._trace(clips)
            return (self.traced.get(tuple(clips.shape)) or self.eager)(clips)

    def _trace(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = tuple(clips.shape)
        ref = self.eager(clips)
        try:
            with warnings.catch_warnings():  # shape checks become constants: right, traces are per shape
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                fn = torch.jit.freeze(torch.jit.trace(self.eager, (clips,), check_trace=False))
            got = fn(clips)
            err = max(float((a.float() - b.float()).abs().max()) for a, b in zip(got, ref, strict=True))
            if err > self.atol:
                raise ValueError(f"traced pass differs from eager by {err:.2e} (> {self.atol:.0e})")
        except Exception as exc:  # a model the tracer cannot follow still runs, eagerly
            log.warning("window pass not traced; running eager", shape=shape, error=str(exc)[:300])
            self.traced[shape] = None
            return ref
        self.traced[shape] = fn
        log.info("window pass traced", shape=shape, max_abs_diff=err)
        return ref
