"""Segment lengths are seconds of stream time: the events node turns them into steps per camera, from the
configured window cadence (stride_frames / fps), or from the measured one for a file or an unknown camera."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception.messages import Embedding, Event
from perception.nodes.events import EventsNode
from perception.nodes.segmenter import segment_steps
from perception.nodes.segments import measured_cadence_s

from .harness import collect, embed, embed_server, node_config, running
from .streams import unit, window


@pytest.mark.parametrize(
    ("min_s", "max_s", "cadence", "steps"),
    [
        (0.5, 16.0, 8 / 30, (2, 60)),  # the default config: stride 8 at 30 fps
        (0.5, 16.0, 1 / 400, (200, 6400)),  # the bench's saturated phase: a window every frame at 400 fps
        (0.5, None, 0.25, (2, None)),  # None: never force a boundary
        (0.01, 0.02, 0.25, (1, 1)),  # shorter than a window: one step, max never below min
        (1.0, 30.0, 1 / 30, (30, 900)),  # stride 1 at 30 fps
    ],
    ids=["default", "saturated", "unbounded", "sub-window", "stride-1"],
)
def test_segment_steps(min_s, max_s, cadence, steps):
    assert segment_steps(min_s, max_s, cadence) == steps


@given(cadence=st.floats(1e-3, 2.0), min_s=st.floats(0.01, 10.0), extra=st.floats(0.0, 60.0))
def test_segment_steps_span_the_seconds_to_within_half_a_window(cadence, min_s, extra):
    lo, hi = segment_steps(min_s, min_s + extra, cadence)
    assert 1 <= lo <= hi
    assert lo == 1 or abs(lo * cadence - min_s) <= cadence / 2 + 1e-9
    assert hi == lo or abs(hi * cadence - (min_s + extra)) <= cadence / 2 + 1e-9


@pytest.mark.parametrize(
    ("end_s", "cadence"),
    [
        ([1.0, 1.25, 1.5, 1.75], 0.25),
        ([1.0, 1.5, 1.75, 2.25], 0.25),  # windows the encoder skipped while behind widen gaps, never narrow them
        ([59.75, 0.0, 0.25, 0.5], 0.25),  # a looping source starts again at 0
        ([0.0, 0.0, 0.0, 0.0], None),  # no stream times: cannot tell
        ([3.0], None),
    ],
    ids=["regular", "skipped", "loop", "untimed", "one"],
)
def test_measured_cadence(end_s, cadence):
    assert measured_cadence_s(end_s) == (pytest.approx(cadence) if cadence else None)


def embedding(cam: str, i: int, cadence: float, vec: np.ndarray, t0: int, timed: bool = True) -> Embedding:
    return window(cam, i, vec, t0, cadence_s=cadence, timed=timed)


async def test_a_forced_boundary_comes_after_max_len_s_of_stream_time_on_every_camera(
    runtime_dir, random_checkpoint, text_model
):
    cameras = [
        {"name": "slow", "fps": 10},
        {"name": "fast", "fps": 40},
        {"name": "clip", "type": "file", "path": "clip.mp4", "fps": 30},
    ]  # the file plays at its own 25 fps
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=cameras,
        encoder={"stride_frames": 2},
        events={"threshold": 1000.0, "min_len_s": 0.5, "max_len_s": 2.0, "top_labels": 1},
    )
    cadence = {"slow": 2 / 10, "fast": 2 / 40, "clip": 2 / 25, "replayed": 0.1, "untimed": 0.2}
    async with embed_server(config, text_model), running(EventsNode, config, ["events/"]) as (node, pub, sub):
        rng = np.random.default_rng(0)
        a = embed(text_model, ["alpha"])[0]
        t0 = time.time_ns()
        sent = 0
        for cam, c in cadence.items():
            for i in range(round(3.0 / c)):  # 3 s of each stream: one forced boundary, at 2 s
                vec = unit(a + 0.02 * rng.normal(size=a.shape))
                pub.publish_nowait(f"embeddings/{cam}", embedding(cam, i, c, vec, t0, timed=cam != "untimed"))
                sent += 1
                await asyncio.sleep(0.002)
        envs = await collect(sub, "events/", len(cadence), timeout=30)
        async with asyncio.timeout(10):
            while node.counters["embeddings"] < sent:
                await asyncio.sleep(0.05)
        assert node.counters["segments"] == len(cadence)  # no other boundary: the threshold is out of reach
        segments = {e.msg.cam: e.msg for e in envs if isinstance(e.msg, Event) and e.msg.kind == "segment"}
        assert sorted(segments) == sorted(cadence)
        for cam in ("slow", "fast", "clip", "replayed"):
            # from the first window's centre to the centre of the first window after the cut
            assert segments[cam].end_s - segments[cam].start_s == pytest.approx(2.0), cam
            assert segments[cam].segment_id >= t0 // 1_000_000  # a stream's ids start at its first capture time (ms)
        # the untimed stream (no stream seconds) fell back to the first camera's cadence: 10 windows, 2 s of
        # capture time here
        assert (segments["untimed"].end_ns - segments["untimed"].start_ns) / 1e9 == pytest.approx(2.0)
        streams = node.streams
        assert {cam: s.segmenter.config.max_len for cam, s in streams.items()} == {
            "slow": 10,
            "fast": 40,
            "clip": 25,
            "replayed": 20,
            "untimed": 10,
        }
        assert {cam: s.cadence_from for cam, s in streams.items()} == {
            "slow": "config",
            "fast": "config",
            "clip": "measured",
            "replayed": "measured",
            "untimed": "fallback",
        }
        assert streams["fast"].segmenter.config.min_len == 10 and streams["slow"].segmenter.config.min_len == 2
