"""Training items cut from streams the way the service cuts them.

A ShapesWorld clip renders one whole action into its frames; the service's windows show `window_s`
seconds of a 1-8 s segment, so a move covers part of its path and an instant (a colour change, an
appearance) is in view in few windows (docs/service.md, "End-to-end caption check"). An item here is
`frames` frames spread over `window_s` seconds of a short planned stream, labelled with the segment at the
window's centre: what a live window shows, with the caption the service should give it.
Items have the same keys as `ShapesWorldClips` items, so `collate_clips` and the trainer take both.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from perception.data.qa import clip_questions
from perception.data.shapesworld import training_item
from perception.data.stream import ShapesStream


class StreamWindows(Dataset):
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
        if length < 1 or frames < 2 or not 0 < window_s < stream_s:
            raise ValueError(
                f"need length >= 1, frames >= 2, 0 < window_s < stream_s; got {length}, {frames}, "
                f"{window_s}, {stream_s}"
            )
        self.length, self.seed, self.split = length, seed, split
        self.frames, self.size, self.window_s, self.stream_s = frames, size, window_s, stream_s

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"window index {index} out of range for a dataset of {self.length}")
        rng = np.random.default_rng([self.seed, index, 0x5717])
        # the stream is rendered at the window's frame rate: frame k of the window is frame c - T/2 + k
        stream = ShapesStream(
            seed=int(rng.integers(2**31)),
            split=self.split,
            duration_s=self.stream_s,
            fps=self.frames / self.window_s,
            size=self.size,
        )
        half = self.frames // 2
        centre = int(rng.integers(half, stream.num_frames - self.frames + half + 1))
        video = stream.frames(centre - half, centre - half + self.frames)  # [T, H, W, 3]
        seg = stream.segment_at(stream.time_of(centre))
        seen = {(o.colour, o.shape) for o in seg.objects}
        if seg.new_colour:
            seen.add((seg.new_colour, seg.slots.shape))
        count = len(seg.objects)
        qa = clip_questions(rng, seg.slots, seg.new_colour, seen, count)
        return training_item(video, seg.captions, seg.slots, seg.new_colour, qa, count, index)


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
