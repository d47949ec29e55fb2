"""Training items cut from streams the way the service cuts them.

A ShapesWorld clip renders one whole action into its frames; the service's windows show `window_s`
seconds of a 1-8 s segment, so a move covers part of its path and an instant (a colour change, an
appearance) is in view in few windows (docs/service.md, "End-to-end caption check"). An item here is
`frames` frames spread over `window_s` seconds of a short planned stream, labelled with the segment at the
window's centre: what a live window shows, with the caption the service should give it.
Items have the same keys as `ShapesWorldClips` items, so `collate_clips` and the trainer take both.

`SegmentWindows` goes one step further: the service decodes the *mean* embedding of an online segment's
windows, so its item is K windows of one segment, labelled with that segment's captions.

Ambiguous segments (`Segment.ambiguous`: every object still, more than one in view) are never taught:
their caption names one of several still objects at random, so no model could learn it. A window whose
centre falls in one is re-drawn from the same item rng, so item i stays a pure function of (seed, i).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from perception.data.qa import clip_questions
from perception.data.shapesworld import collate_clips, training_item
from perception.data.stream import Segment, ShapesStream

CENTRE_TRIES = 4  # centres drawn in one stream before a fresh stream is planned
STREAM_TRIES = 32  # streams planned before giving up (~11% of segments are ambiguous: never reached)


def _check(length: int, frames: int, window_s: float, stream_s: float) -> None:
    if length < 1 or frames < 2 or not 0 < window_s < stream_s:
        raise ValueError(
            f"need length >= 1, frames >= 2, 0 < window_s < stream_s; got {length}, {frames}, {window_s}, {stream_s}"
        )


def _stream(rng: np.random.Generator, split: str, stream_s: float, frames: int, window_s: float, size: int):
    """A stream rendered at the window's frame rate: frame k of a window centred on c is frame c - T/2 + k."""
    return ShapesStream(
        seed=int(rng.integers(2**31)), split=split, duration_s=stream_s, fps=frames / window_s, size=size
    )


def centre_range(stream: ShapesStream, frames: int) -> range:
    """Frames a window of `frames` frames can be centred on without leaving the stream."""
    half = frames // 2
    return range(half, stream.num_frames - frames + half + 1)


class _StreamItems(Dataset):
    """Items cut from short planned streams: `length` items, each `frames` frames over `window_s` seconds."""

    def __init__(
        self,
        length: int,
        seed: int = 0,
        split: str = "train",
        frames: int = 8,
        size: int = 64,
        window_s: float = 2.0,
        stream_s: float = 12.0,
    ) -> None:
        _check(length, frames, window_s, stream_s)
        self.length, self.seed, self.split = length, seed, split
        self.frames, self.size, self.window_s, self.stream_s = frames, size, window_s, stream_s

    def __len__(self) -> int:
        return self.length


class StreamWindows(_StreamItems):
    def place(self, index: int, rng: np.random.Generator | None = None) -> tuple[ShapesStream, int]:
        """(stream, centre frame) of item `index`: the first draw whose segment is not ambiguous."""
        rng = np.random.default_rng([self.seed, index, 0x5717]) if rng is None else rng
        for _ in range(STREAM_TRIES):
            stream = _stream(rng, self.split, self.stream_s, self.frames, self.window_s, self.size)
            span = centre_range(stream, self.frames)
            for _ in range(CENTRE_TRIES):
                centre = int(rng.integers(span.start, span.stop))
                if not stream.segment_at(stream.time_of(centre)).ambiguous:
                    return stream, centre
        raise RuntimeError(f"no unambiguous window for item {index} in {STREAM_TRIES} streams")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"window index {index} out of range for a dataset of {self.length}")
        rng = np.random.default_rng([self.seed, index, 0x5717])
        stream, centre = self.place(index, rng)
        half = self.frames // 2
        video = stream.frames(centre - half, centre - half + self.frames)  # [T, H, W, 3]
        seg = stream.segment_at(stream.time_of(centre))
        seen = {(o.colour, o.shape) for o in seg.objects}
        if seg.new_colour:
            seen.add((seg.new_colour, seg.slots.shape))
        count = len(seg.objects)
        qa = clip_questions(rng, seg.slots, seg.new_colour, seen, count)
        return training_item(video, seg.captions, seg.slots, seg.new_colour, qa, count, index)


class SegmentWindows(_StreamItems):
    """Item i: K windows of ONE non-ambiguous stream segment, labelled with that segment's captions.

    What the service decodes for a segment is the mean S^_Y of its windows; these items let stage 3 teach
    the decoder that input (stage3.segment_mean_fraction). Window centres are stratified over the
    segment (one uniform draw in each of K equal parts of its centre frames), so the K windows spread over
    it as the service's do; a window may reach past the segment's edges, as the service's windows do.
    Short segments (fewer centre frames than K) repeat centres.

    Items: {"video": uint8 [K, T, C, H, W], "caption", "captions", "slots", "new_colour", "index",
    "centres_s": K window-centre times, "span_s": (start_s, end_s) of the segment}. Batch them with
    `collate_segments`. Item i is a pure function of (seed, split, i).
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        split: str = "train",
        windows: int = 4,
        frames: int = 8,
        size: int = 64,
        window_s: float = 2.0,
        stream_s: float = 12.0,
    ) -> None:
        super().__init__(length, seed, split, frames, size, window_s, stream_s)
        if windows < 1:
            raise ValueError(f"need windows >= 1, got {windows}")
        self.windows = windows

    def place(self, index: int) -> tuple[ShapesStream, Segment, list[int]]:
        """(stream, segment, K centre frames) of item `index`."""
        rng = np.random.default_rng([self.seed, index, 0x5E6])
        for _ in range(STREAM_TRIES):
            stream = _stream(rng, self.split, self.stream_s, self.frames, self.window_s, self.size)
            owned = _centres_by_segment(stream, self.frames)
            if owned:
                seg_i = sorted(owned)[int(rng.integers(len(owned)))]
                return stream, stream.segments[seg_i], _stratified(rng, owned[seg_i], self.windows)
        raise RuntimeError(f"no unambiguous segment for item {index} in {STREAM_TRIES} streams")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"segment index {index} out of range for a dataset of {self.length}")
        stream, seg, centres = self.place(index)
        half = self.frames // 2
        video = np.stack([stream.frames(c - half, c - half + self.frames) for c in centres])  # [K, T, H, W, 3]
        return {
            "video": torch.from_numpy(video).permute(0, 1, 4, 2, 3).contiguous(),  # [K, T, C, H, W]
            "caption": seg.caption,
            "captions": list(seg.captions),
            "slots": seg.slots,
            "new_colour": seg.new_colour,
            "index": index,
            "centres_s": [stream.time_of(c) for c in centres],
            "span_s": (seg.start_s, seg.end_s),
        }


def _centres_by_segment(stream: ShapesStream, frames: int) -> dict[int, list[int]]:
    """Segment index -> the window-centre frames that fall in it, for non-ambiguous segments only."""
    position = {id(s): i for i, s in enumerate(stream.segments)}
    owned: dict[int, list[int]] = {}
    for c in centre_range(stream, frames):
        seg = stream.segment_at(stream.time_of(c))
        if not seg.ambiguous:
            owned.setdefault(position[id(seg)], []).append(c)
    return owned


def _stratified(rng: np.random.Generator, centres: list[int], k: int) -> list[int]:
    """K of `centres` (sorted): one uniform draw in each of K equal parts, so they spread over the segment."""
    n = len(centres)
    edges = np.linspace(0, n, k + 1)
    picks = [int(np.clip(np.floor(rng.uniform(edges[j], edges[j + 1])), 0, n - 1)) for j in range(k)]
    return [centres[p] for p in picks]


def collate_segments(batch: list[dict]) -> dict:
    """Stack segment items' videos to uint8 [B, K, T, C, H, W]; every other field becomes a list of length B."""
    shapes = {tuple(b["video"].shape) for b in batch}
    if len(shapes) != 1 or len(next(iter(shapes))) != 5:
        raise ValueError(f"segment items need equal [K, T, C, H, W] videos; got {sorted(shapes)}")
    return collate_clips(batch)


class MixedItems(Dataset):
    """Item i from `windows` for a seeded `fraction` of the indices, else from `clips` (same length)."""

    def __init__(self, clips: Dataset, windows: Dataset, fraction: float, seed: int = 0) -> None:
        if len(clips) != len(windows) or not 0 <= fraction <= 1:
            raise ValueError(f"need equal lengths and 0 <= fraction <= 1; got {len(clips)}, {len(windows)}, {fraction}")
        self.clips, self.windows, self.fraction, self.seed = clips, windows, fraction, seed

    def __len__(self) -> int:
        return len(self.clips)

    def is_window(self, index: int) -> bool:
        return bool(np.random.default_rng([self.seed, index, 0x313]).random() < self.fraction)

    def __getitem__(self, index: int) -> dict:
        return (self.windows if self.is_window(index) else self.clips)[index]
