import numpy as np
import pytest

from perception.data.scene import end_state
from perception.data.shapesworld import passive_allowed
from perception.data.stream import ShapesStream
from perception.data.vocab import HELDOUT_COMBOS, parse_slots

from .pixels import centroid


def test_stream_is_deterministic_and_covers_its_duration():
    a, b = ShapesStream(4, duration_s=45, fps=10), ShapesStream(4, duration_s=45, fps=10)
    assert a.segments == b.segments
    for i in (0, 123, a.num_frames - 1):
        np.testing.assert_array_equal(a.frame_at(i), b.frame_at(i))
    assert ShapesStream(5, duration_s=45, fps=10).segments != a.segments
    assert a.duration_s >= 45 and a.num_frames == int(a.duration_s * 10)
    assert a.frame_at(0).shape == (64, 64, 3) and a.frame_at(0).dtype == np.uint8


def test_default_duration_is_30_to_120_s_and_segments_1_to_8_s():
    for seed in range(8):
        s = ShapesStream(seed)
        assert 30 <= s.duration_s <= 128
        assert s.segments[0].start_s == 0
        for prev, seg in zip(s.segments, s.segments[1:]):
            assert seg.start_s == prev.end_s
        assert all(1.0 <= seg.duration_s <= 8.0 for seg in s.segments)
        assert all(parse_slots(seg.caption) == seg.slots for seg in s.segments)


def test_segments_continue_from_the_previous_end_state():
    s = ShapesStream(2, duration_s=90)
    for prev, seg in zip(s.segments, s.segments[1:]):
        carried = end_state(prev.objects, prev.action)
        appearing = seg.objects[len(carried) :]
        assert seg.objects[: len(carried)] == carried
        assert len(appearing) == (seg.action.kind == "appear")
        # Instantaneous changes happen mid-segment, so the picture hardly changes across a boundary.
        k = int(np.ceil(seg.start_s * s.fps))
        if 0 < k < s.num_frames:
            changed = np.any(s.frame_at(k - 1) != s.frame_at(k), axis=-1).mean()
            assert changed < 0.05


def test_moves_in_a_stream_move_the_right_way():
    checked = 0
    for seed in range(6):
        s = ShapesStream(seed, duration_s=60, fps=10)
        for seg in s.segments:
            if not seg.slots.action.startswith("move_"):
                continue
            first = s.frame_at(int(np.ceil(seg.start_s * s.fps)))
            last = s.frame_at(min(int(seg.end_s * s.fps) - 1, s.num_frames - 1))
            (x0, y0), (x1, y1) = centroid(first, seg.slots.colour), centroid(last, seg.slots.colour)
            delta = {"move_left": x0 - x1, "move_right": x1 - x0, "move_up": y0 - y1, "move_down": y1 - y0}
            assert delta[seg.slots.action] > 8
            checked += 1
    assert checked >= 5


def test_train_streams_never_show_heldout_combinations_and_heldout_streams_use_them():
    held = 0
    for seed in range(10):
        train = ShapesStream(seed, "train", duration_s=60)
        for seg in train.segments:
            assert seg.slots not in HELDOUT_COMBOS
            assert all(passive_allowed(o.colour, o.shape, "train") for o in seg.objects)
        held += sum(seg.slots in HELDOUT_COMBOS for seg in ShapesStream(seed, "heldout", 60).segments)
    assert held >= 10


def test_iterator_and_windows_match_frame_at():
    s = ShapesStream(1, duration_s=3, fps=5, size=32)
    frames = list(s)
    assert len(frames) == len(s) == s.num_frames
    np.testing.assert_array_equal(s.frames(2, 10, 2), np.stack(frames[2:10:2]))
    with pytest.raises(IndexError):
        s.frame_at(s.num_frames)
    with pytest.raises(ValueError, match="fps"):
        ShapesStream(1, fps=0)


def test_ambiguous_segments_are_still_segments_with_company():
    segs = [s for k in range(20) for s in ShapesStream(seed=k, split="heldout", duration_s=60.0, fps=4.0).segments]
    amb = [s for s in segs if s.ambiguous]
    assert amb, "the streams must contain some, or the exclusion is never exercised"
    assert all(s.slots.action == "stay_still" and sum(o.visible for o in s.objects) > 1 for s in amb)
    lone = [s for s in segs if s.slots.action == "stay_still" and sum(o.visible for o in s.objects) == 1]
    assert lone and not any(s.ambiguous for s in lone)
    print(f"{len(amb)} of {len(segs)} segments ambiguous")
