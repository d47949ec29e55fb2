"""Training windows cut from streams: what a live window shows, labelled with the segment at its centre."""

import numpy as np
import pytest

from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.data.stream import ShapesStream
from perception.data.stream_windows import MixedItems, StreamWindows


def test_a_window_is_the_streams_frames_around_its_centre_with_that_segments_caption():
    ds = StreamWindows(100, seed=3, frames=8, size=32, window_s=2.0, stream_s=12.0)
    for i in (0, 7, 42):
        item = ds[i]
        assert item["video"].shape == (8, 3, 32, 32) and item["video"].dtype.__str__() == "torch.uint8"
        rng = np.random.default_rng([3, i, 0x5717])
        stream = ShapesStream(seed=int(rng.integers(2**31)), split="train", duration_s=12.0, fps=4.0, size=32)
        centre = int(rng.integers(4, stream.num_frames - 4 + 1))
        assert np.array_equal(item["video"].permute(0, 2, 3, 1).numpy(), stream.frames(centre - 4, centre + 4))
        seg = stream.segment_at(stream.time_of(centre))
        assert item["caption"] == seg.caption and item["slots"] == seg.slots and item["captions"] == list(seg.captions)
        assert {q["kind"] for q in item["qa"]} >= {"colour", "shape", "count", "presence"}
    assert np.array_equal(ds[7]["video"].numpy(), ds[7]["video"].numpy()) and ds[7]["caption"] == ds[7]["caption"]
    with pytest.raises(IndexError):
        ds[100]
    with pytest.raises(ValueError):
        StreamWindows(10, window_s=20.0, stream_s=12.0)


def test_mixed_items_take_the_configured_share_of_windows_and_collate_with_clips():
    clips, windows = ShapesWorldClips(400, size=32), StreamWindows(400, size=32)
    mixed = MixedItems(clips, windows, 0.5, seed=1)
    share = np.mean([mixed.is_window(i) for i in range(400)])
    assert 0.4 < share < 0.6
    i_win = next(i for i in range(400) if mixed.is_window(i))
    i_clip = next(i for i in range(400) if not mixed.is_window(i))
    assert mixed[i_win]["caption"] == windows[i_win]["caption"] and mixed[i_clip]["caption"] == clips[i_clip]["caption"]
    batch = collate_clips([mixed[i_win], mixed[i_clip]])
    assert batch["video"].shape == (2, 8, 3, 32, 32)
    assert [MixedItems(clips, windows, f).is_window(5) for f in (0.0, 1.0)] == [False, True]
