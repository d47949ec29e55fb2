"""The encoder's `vlm` mode: every window captioned by the token-generative baseline (what people run today).

Where VL-JEPA predicts one embedding per window and decodes text only when the events node sees the scene
change, a classical VLM generates a caption for every window: X-encoder, then the causal LM over
[visual ; query ; BOS] and one cached step per token (perception/model/vlm.py). This module is that pass
and its Caption, so the encoder node only picks which pass runs; `perception bench cost` compares the two.

What a caption costs is counted where it is published (the encoder's counters, on stats/encoder):
`vlm_tokens` (generated tokens, EOS included) and `vlm_forwards` (LM passes: the prefix pass predicts the
first token, each further token one cached pass, so a caption ending in EOS costs as many passes as it has
tokens; the X-encoder pass per window is `windows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.messages import Caption
from perception.nodes.models import load_vlm
from perception.nodes.windows import WindowJob


def lm_passes(tokens: int) -> int:
    """LM passes behind a caption of `tokens` generated tokens: the prefix pass (it predicts the first)
    and one cached pass per further token (the last, EOS, is never fed back)."""
    return max(int(tokens), 1)


class VLMCaptioner:
    """`captioner(clips)` with clips uint8 [B, T, H, W, 3] -> (S_V [B, N, Dv], [(text, tokens)] * B), greedy."""

    def __init__(self, vlm: Any, model_id: str, query: str = "") -> None:
        self.vlm, self.model_id, self.query = vlm, model_id, query
        self.frames = int(vlm.x_encoder.cfg.frames)  # the window length the X-encoder was trained on
        self.image_size = int(vlm.x_encoder.cfg.image_size)

    @classmethod
    def load(cls, config, threads: int | None = None) -> VLMCaptioner:
        enc = config.pipeline.encoder
        vlm, model_id = load_vlm(enc, config.model, threads)
        return cls(vlm, model_id, enc.query)

    def __call__(self, clips: np.ndarray):
        import torch

        x = torch.from_numpy(clips).permute(0, 1, 4, 2, 3)  # [B, T, 3, H, W] uint8, as the X-encoder takes it
        with torch.inference_mode():
            s_v = self.vlm.visual_tokens(x)  # [B, N, Dv]
            return s_v, self.vlm.generate_counted(s_v, self.query)

    def answer(self, s_v, question: str, choices: list[str] | None) -> dict[str, Any]:
        """`ask` on a camera's last S_V: the likeliest choice (scores: summed token log-likelihoods), or
        the text generated with the question as the query."""
        import torch

        with torch.inference_mode():
            if choices:
                ll = self.vlm.log_likelihood(s_v, question, choices)[0, : len(choices)].tolist()  # [C]
                best = max(range(len(choices)), key=lambda i: ll[i])
                return {"answer": choices[best], "scores": {c: round(s, 4) for c, s in zip(choices, ll)}}
            return {"text": self.vlm.generate(s_v, question)[0]}


def window_caption(job: WindowJob, text: str, now_ns: int) -> Caption:
    """The Caption of one window, in the decoder's schema: segment_id = the window number, the window's
    frame times, latency = its last frame's capture -> now (published)."""
    return Caption(
        cam=job.cam,
        segment_id=job.window,
        text=text,
        start_ns=job.first.t_capture_ns,
        end_ns=job.last.t_capture_ns,
        start_s=job.first.stream_s,
        end_s=job.last.stream_s,
        t_capture_ns=job.last.t_capture_ns,
        latency_ms=round((now_ns - job.last.t_capture_ns) / 1e6, 2),
    )
