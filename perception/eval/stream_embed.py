"""A ShapesWorld stream embedded the way the service embeds a camera: one neutral-query S^_Y per step.

Shared by the selective-decoding sweep (suite.py) and the caption replay (stream_captions.py).
"""

from __future__ import annotations

import numpy as np
import torch

from perception.data.stream import ShapesStream
from perception.model import VLJepa


def batches(n: int, size: int):
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


def stream_embeddings(
    model: VLJepa, stream: ShapesStream, step_s: float = 0.25, window_s: float = 2.0, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) embeddings and (T,) times (the window centres): a window of the model's frame count spanning
    `window_s`, centred on each step. The stream must be rendered at the window's frame rate."""
    T = model.cfg.x_encoder.frames
    frame_dt = window_s / T
    step = max(1, round(step_s / frame_dt))
    centres = list(range(T // 2, stream.num_frames - T // 2, step))
    embs = []
    for chunk in batches(len(centres), batch):
        wins = [stream.frames(centres[i] - T // 2, centres[i] - T // 2 + T) for i in chunk]  # [T,H,W,3] each
        video = torch.from_numpy(np.stack(wins)).permute(0, 1, 4, 2, 3)  # [B,T,3,H,W]
        embs.append(model.predict(model.encode_video(video), "").cpu().numpy())
    times = np.array([stream.time_of(c) for c in centres])
    return np.concatenate(embs).astype(np.float64), times


def eval_stream(model: VLJepa, seed: int, split: str, seconds: float, window_s: float = 2.0) -> ShapesStream:
    """A stream at the windows' frame rate and the model's image size."""
    return ShapesStream(
        seed=seed,
        split=split,
        duration_s=seconds,
        fps=model.cfg.x_encoder.frames / window_s,
        size=model.cfg.x_encoder.image_size,
    )
