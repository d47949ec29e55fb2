"""The encoder's window schedule on its own: which frames make each window, what is dropped and counted."""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

from perception.messages import Frame
from perception.nodes.windows import WindowSchedule, stack_windows


def frame(i: int, cam: str = "cam0", size: int = 4, t_ns: int | None = None) -> Frame:
    image = np.full((size, size, 3), i % 256, dtype=np.uint8)
    return Frame(cam=cam, index=i, t_capture_ns=t_ns if t_ns is not None else 10**9 + i, stream_s=i / 30, image=image)


def schedule(
    w: int = 4, step: int = 2, stride: int = 4, max_batch: int = 8, **kw
) -> tuple[WindowSchedule, collections.Counter]:
    counters: collections.Counter[str] = collections.Counter()
    return WindowSchedule(w, step, stride, max_batch, counters, max_cameras=kw.pop("max_cameras", 16), **kw), counters


def indices(job) -> list[int]:
    return [f.index for f in job.frames]


def test_windows_take_every_step_th_frame_and_follow_each_other_by_the_stride():
    s, counters = schedule(w=4, step=2, stride=4)
    assert s.span == 7
    due = [s.add(frame(i)) for i in range(7)]
    assert due == [False] * 6 + [True]  # frame 6 completes window 0
    [job] = s.take_due()
    assert (job.cam, job.window, indices(job)) == ("cam0", 0, [0, 2, 4, 6])
    assert s.take_due() == [] and not s.any_due()
    for i in range(7, 11):
        s.add(frame(i))
    [job] = s.take_due()
    assert (job.window, indices(job)) == (1, [4, 6, 8, 10])
    assert counters["windows_dropped"] == 0 and counters["frames_substituted"] == 0


def test_only_the_newest_due_window_is_taken_and_the_stale_ones_are_counted():
    s, counters = schedule(w=4, step=2, stride=4)
    for i in range(21):  # windows end at 6, 10, 14, 18: all due, nobody took them
        s.add(frame(i))
    [job] = s.take_due()
    assert indices(job) == [12, 14, 16, 18] and job.window == 3  # its place on the grid: 3 were skipped
    assert counters["windows_dropped"] == 3
    assert len(s.cams["cam0"].frames) == s.span + s.stride  # the ring is bounded


def test_a_missing_frame_is_replaced_by_the_nearest_earlier_one_even_across_a_huge_gap():
    s, counters = schedule(w=4, step=2, stride=8)
    for i in [*range(7), *range(7, 12), 13, 14]:  # window 1 = 8, 10, 12, 14, but 12 never came
        s.add(frame(i))
        if i == 6:
            s.take_due()
    [job] = s.take_due()
    assert indices(job) == [8, 10, 11, 14] and counters["frames_substituted"] == 1

    s, counters = schedule(w=4, step=1, stride=1)
    for i in range(3):
        s.add(frame(i))
    t0 = time.perf_counter()
    s.add(frame(2**40))  # a gap of 2**40 frames: found by binary search, not counted down through
    [job] = s.take_due()
    assert time.perf_counter() - t0 < 1.0
    assert indices(job) == [2, 2, 2, 2**40] and counters["frames_substituted"] == 3


def test_windows_lie_on_a_grid_anchored_at_frame_zero_whenever_a_camera_is_first_seen():
    """A live run from frame 0 and a recording that starts at frame 13 cut the same windows, same numbers."""
    from_start, _ = schedule(w=4, step=2, stride=4)
    mid_stream, _ = schedule(w=4, step=2, stride=4)
    live, replayed = {}, {}
    for i in range(40):
        for s, out in ((from_start, live), (mid_stream, replayed)):
            if s is from_start or i >= 13:
                s.add(frame(i))
                out.update({job.window: indices(job) for job in s.take_due()})
    assert min(replayed) == 4 and replayed[4] == [16, 18, 20, 22]  # the first window wholly after frame 13
    assert replayed == {k: v for k, v in live.items() if k >= 4}
    assert live[0] == [0, 2, 4, 6] and live[1] == [4, 6, 8, 10]


@pytest.mark.parametrize(("w", "step", "stride"), [(8, 8, 8), (4, 2, 4), (4, 1, 2), (4, 6, 4)])
def test_the_frames_capture_sends_make_the_same_windows_as_every_frame(w, step, stride):
    """Capture sends every gcd(step, stride)-th frame only (perception/nodes/feed.py): nothing changes."""
    import math

    every = math.gcd(step, stride)
    full, sent = schedule(w=w, step=step, stride=stride), schedule(w=w, step=step, stride=stride)
    windows = {"full": [], "sent": []}
    for i in range(5, 200):  # first seen mid-stream, as a camera that starts late
        for (s, _), key in ((full, "full"), (sent, "sent")):
            if key == "full" or i % every == 0:
                s.add(frame(i))
                windows[key] += [(job.window, indices(job)) for job in s.take_due()]
    assert windows["full"] == windows["sent"] and len(windows["full"]) >= 10
    assert sent[1]["frames_substituted"] == 0 and sent[1]["windows_dropped"] == 0


def test_a_window_beyond_the_ring_is_incomplete():
    s, _ = schedule(w=4, step=1, stride=1)
    for i in range(10, 20):
        s.add(frame(i))
    cam = s.cams["cam0"]
    assert s.window_frames(cam, cam.frames[0].index + 1) is None  # reaches back before the oldest frame kept


def test_a_window_of_mixed_frame_sizes_is_skipped_and_reported():
    bad = []
    s, counters = schedule(w=4, step=1, stride=4, on_bad_window=lambda cam, exc: bad.append((cam, str(exc))))
    for i in range(8):  # window 0 has a 2 px frame; window 1 is fine
        s.add(frame(i, size=2 if i == 2 else 4))
        if i == 3:
            assert s.take_due() == []
    [job] = s.take_due()
    assert indices(job) == [4, 5, 6, 7] and job.window == 1  # window 0 was skipped: numbers follow the grid
    assert len(bad) == 1 and bad[0][0] == "cam0" and "different sizes" in bad[0][1]


def test_a_restarted_camera_starts_a_new_ring():
    s, counters = schedule(w=2, step=1, stride=1)
    for i in range(5):
        s.add(frame(i))
    s.take_due()
    s.add(frame(0))  # its index went back: the source restarted
    assert counters["camera_resets"] == 1 and [f.index for f in s.cams["cam0"].frames] == [0]
    assert s.add(frame(1))
    [job] = s.take_due()
    assert indices(job) == [0, 1] and job.window == 0


def test_at_most_max_batch_windows_the_newest_and_oldest_camera_first():
    s, counters = schedule(w=2, step=1, stride=2, max_batch=2)
    for cam, t0 in (("a", 300), ("b", 100), ("c", 200)):
        for i in range(2):
            s.add(frame(i, cam=cam, t_ns=t0 + i))
    jobs = s.take_due()
    assert [j.cam for j in jobs] == ["c", "a"]  # b's window is the oldest: dropped
    assert counters["windows_dropped"] == 1


def test_invented_cameras_are_evicted_and_protected_ones_stay():
    evicted = []
    s, _ = schedule(max_cameras=3, protected=["cam0"], on_evict=lambda name, cam: evicted.append(name))
    s.add(frame(0, cam="cam0"))
    for k in range(10):
        s.add(frame(0, cam=f"x{k}"))
        assert len(s.cams) <= 3
    assert set(s.cams.keys()) == {"cam0", "x8", "x9"} and evicted == [f"x{k}" for k in range(8)]


def test_stack_windows_copies_each_frame_into_one_batch():
    s, _ = schedule(w=2, step=1, stride=1)
    for cam in ("a", "b"):
        for i in range(2):
            s.add(frame(i + (10 if cam == "b" else 0), cam=cam))
    jobs = s.take_due()
    batch = stack_windows(jobs)
    assert batch.shape == (2, 2, 4, 4, 3) and batch.dtype == np.uint8
    for b, job in enumerate(jobs):
        for t, f in enumerate(job.frames):
            np.testing.assert_array_equal(batch[b, t], f.image)


def test_nonsense_sizes_are_refused():
    with pytest.raises(ValueError):
        WindowSchedule(0, 1, 1, 1, collections.Counter(), max_cameras=1)


def test_a_camera_on_standby_keeps_its_ring_falls_due_never_and_takes_over_on_the_grid():
    """Another encoder worker owns the camera: this one keeps its frames (to take over with a full ring)
    but has no window due, and counts nothing stale when it takes the camera."""
    s, counters = schedule(w=4, step=2, stride=4)
    assert not any(s.add(frame(i), standby=True) for i in range(30))
    assert s.take_due() == [] and not s.any_due() and len(s.cams["cam0"].frames) == s.span + s.stride
    assert s.add(frame(30))  # owned again at a grid end (6, 10, ... 30): due at once
    [job] = s.take_due()
    assert (job.window, indices(job)) == (6, [24, 26, 28, 30])  # the ring reached back: no warm-up
    assert [s.add(frame(i)) for i in (31, 32, 33, 34)] == [False, False, False, True]
    assert counters["windows_dropped"] == 0 and counters["windows_incomplete"] == 0
