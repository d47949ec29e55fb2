"""Embedding streams for the events and world tests: windows with known times and vectors."""

from __future__ import annotations

import numpy as np

from perception.messages import Embedding


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def window(
    cam: str,
    i: int,
    vec: np.ndarray,
    t0: int,
    *,
    cadence_s: float = 0.25,
    span_s: float = 1.0,
    first_end_s: float = 1.0,
    timed: bool = True,
) -> Embedding:
    """Window i of a camera: it ends at `first_end_s + i * cadence_s` stream seconds (t0 + that in capture
    ns) and spans `span_s`; `timed=False` zeroes the stream times (a source that has none)."""
    end_s = first_end_s + i * cadence_s
    end_ns = t0 + round(end_s * 1e9)
    return Embedding(
        cam=cam,
        window=i,
        start_ns=end_ns - round(span_s * 1e9),
        end_ns=end_ns,
        start_s=(end_s - span_s) * timed,
        end_s=end_s * timed,
        model_id="test",
        t_capture_ns=end_ns,
        embedding=vec,
    )


def quarter_window(cam: str, i: int, vec: np.ndarray, t0: int) -> Embedding:
    """Window i of a stream of back-to-back 0.25 s windows starting at t0."""
    return window(cam, i, vec, t0, cadence_s=0.25, span_s=0.25, first_end_s=0.25)
