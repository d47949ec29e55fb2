"""The online segmenter over a whole recorded stream, for evaluation (perception/eval/selective.py).

The segmenter itself (`OnlineSegmenter`, its config and statistic) is the live service's and lives in
perception/nodes/segmenter.py; this runs it over an embedding array and tiles the result into `Segment`s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.eval.segmentation import Segment, check_stream, segments_from_boundaries
from perception.nodes.segmenter import Boundary, OnlineSegmenter, OnlineSegmenterConfig


def segment_online(
    embs: np.ndarray, times: np.ndarray, config: OnlineSegmenterConfig | None = None
) -> tuple[list[Segment], list[Boundary]]:
    """Run the online segmenter over a whole stream; the last segment is closed at the stream's end."""
    embs, times = check_stream(embs, times)
    seg = OnlineSegmenter(config)
    boundaries: list[Boundary] = []
    for t, e in zip(times, embs, strict=True):
        boundaries.extend(seg.push(float(t), e))
    return segments_from_boundaries([b.index for b in boundaries], len(times)), boundaries


def boundary_indices(boundaries: Sequence[Boundary]) -> list[int]:
    return [b.index for b in boundaries]
