"""The events node's bookkeeping on its own: embeddings in, segment events, decode requests and watch crossings
out, with segment lengths in seconds of stream time per camera."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from perception.messages import DecodeRequest, Embedding, Event
from perception.nodes.config import PipelineConfig
from perception.nodes.segments import MEASURED_WINDOWS, SegmentTracker, StreamStart, Vocabulary

from .streams import unit
from .streams import window as stream_window

D = 16
T0 = 1_700_000_000_000_000_000


def window(cam: str, i: int, vec: np.ndarray, cadence: float = 0.25, t0: int = T0, timed: bool = True) -> Embedding:
    return stream_window(cam, i, vec, t0, cadence_s=cadence, timed=timed)


def tracker(
    events: dict, cameras: list[dict] | None = None, encoder: dict | None = None, watch_emb=None, seed: int = 0
) -> tuple[SegmentTracker, collections.Counter, list[StreamStart]]:
    pipeline = PipelineConfig.model_validate(
        {"cameras": cameras or [{"name": "cam0"}], "events": events, "encoder": encoder or {}}
    )
    ev = pipeline.events
    rng = np.random.default_rng(seed)
    labels = ev.labels or ["alpha", "beta", "gamma"]
    vocab = Vocabulary(labels, np.stack([unit(rng.normal(size=D)) for _ in labels]), ev.watch, watch_emb)
    counters: collections.Counter[str] = collections.Counter()
    starts: list[StreamStart] = []
    t = SegmentTracker(ev, pipeline.encoder, pipeline.cameras, vocab, counters, on_start=starts.append)
    return t, counters, starts


def test_a_planted_change_closes_one_segment_on_its_label_and_the_flush_closes_the_last():
    t, counters, starts = tracker({"threshold": 5.0, "max_len_s": None, "top_labels": 2})
    rng = np.random.default_rng(1)
    a, b = t.vocab.label_emb[0], unit(rng.normal(size=D))
    out = []
    for i in range(24):
        base = a if i < 12 else b
        out += t.push(window("cam0", i, unit(base + 0.02 * rng.normal(size=D))))
    segments = [m for m in out if isinstance(m, Event)]
    decodes = [m for m in out if isinstance(m, DecodeRequest)]
    assert len(segments) == 1 and len(decodes) == 1 and [type(m) for m in out] == [Event, DecodeRequest]
    seg = segments[0]
    assert seg.kind == "segment" and seg.segment_id == (T0 + 10**9 - 10**9) // 1_000_000  # first window's start
    assert seg.labels[0].label == "alpha" and len(seg.labels) == 2
    # from the first window's centre to the centre of the next segment's first window
    assert seg.start_s == pytest.approx(0.5) and seg.end_s == pytest.approx(0.5 + 12 * 0.25)
    assert float(seg.embedding @ a) > 0.99 and decodes[0].segment_id == seg.segment_id
    assert starts == [StreamStart("cam0", 8 / 30, "config", 2, None)]  # stride 8 at 30 fps; 0.5 s = 2 steps
    last = t.flush()
    assert [type(m) for m in last] == [Event, DecodeRequest] and last[0].segment_id == seg.segment_id + 1
    assert last[0].end_s == pytest.approx(0.5 + 23 * 0.25)  # no next window: its last window's centre
    assert counters["segments"] == 2 and counters["embeddings"] == 24
    assert t.flush() == []


def test_watch_phrases_rise_and_fall_with_hysteresis():
    rng = np.random.default_rng(2)
    target = unit(rng.normal(size=D))
    t, counters, _ = tracker(
        {"watch": [{"label": "a purple triangle appears", "enter": 0.9, "leave": 0.5}]}, watch_emb=target[None]
    )
    o = rng.normal(size=D)
    other = unit(o - (o @ target) * target)  # cosine 0
    half = unit(target + other)  # cosine 0.71: between leave and enter, no change either way
    out = []
    for i, v in enumerate([other, target, half, target, other, half]):
        out += t.push(window("cam0", i, v))
    watches = [m for m in out if isinstance(m, Event) and m.kind == "watch"]
    assert [(w.active, w.end_s) for w in watches] == [(True, pytest.approx(1.25)), (False, pytest.approx(2.0))]
    assert watches[0].watch == "a purple triangle appears" and watches[0].labels[0].score == pytest.approx(1.0)
    assert counters["watch_events"] == 2 and counters["segments"] == 0


def test_a_stream_of_an_unconfigured_camera_waits_for_its_measured_cadence():
    t, counters, starts = tracker({"threshold": 1000.0, "min_len_s": 0.5, "max_len_s": 2.0})
    v = t.vocab.label_emb[1]
    out = []
    for i in range(MEASURED_WINDOWS - 1):
        out += t.push(window("replayed", i, v, cadence=0.1))
    assert t.streams["replayed"].segmenter is None and starts == []
    for i in range(MEASURED_WINDOWS - 1, 30):  # 3 s of stream: one forced cut at 2 s
        out += t.push(window("replayed", i, v, cadence=0.1))
    s = t.streams["replayed"]
    assert s.cadence_from == "measured" and s.segmenter.config.max_len == 20 and s.segmenter.config.min_len == 5
    [seg] = [m for m in out if isinstance(m, Event)]
    assert seg.end_s - seg.start_s == pytest.approx(2.0)


def test_a_file_camera_is_measured_and_an_untimed_stream_falls_back_to_its_configured_cadence():
    cams = [{"name": "slow", "fps": 10}, {"name": "clip", "type": "file", "path": "clip.mp4", "fps": 30}]
    t, _, starts = tracker({"max_len_s": 2.0}, cameras=cams, encoder={"stride_frames": 2})
    v = t.vocab.label_emb[0]
    for i in range(MEASURED_WINDOWS):
        t.push(window("clip", i, v, cadence=2 / 25))  # the file plays at its own 25 fps, not the configured 30
        t.push(window("untimed", i, v, timed=False))
        t.push(window("slow", i, v, cadence=0.2))
    by_cam = {s.cam: s for s in starts}
    assert by_cam["slow"].cadence_from == "config" and by_cam["slow"].cadence_s == pytest.approx(0.2)
    assert by_cam["clip"].cadence_from == "measured" and by_cam["clip"].max_len == 25
    assert by_cam["untimed"].cadence_from == "fallback" and by_cam["untimed"].cadence_s == pytest.approx(0.2)


def test_a_camera_whose_times_go_back_starts_over_and_keeps_counting_its_ids():
    t, counters, _ = tracker({"threshold": 1000.0, "max_len_s": 1.0})
    v = t.vocab.label_emb[0]
    ids = []
    for t0 in (T0, T0 - 10**10):  # the second burst's times are earlier: a restarted camera
        for i in range(12):
            ids += [m.segment_id for m in t.push(window("cam0", i, v, cadence=8 / 30, t0=t0)) if isinstance(m, Event)]
    assert counters["stream_resets"] == 1
    assert ids == list(range(ids[0], ids[0] + len(ids))) and len(ids) >= 4


def test_bad_embeddings_are_refused_before_they_are_kept():
    t, counters, _ = tracker({})
    with pytest.raises(ValueError, match="D=16"):
        t.push(window("cam0", 0, np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="non-finite"):
        t.push(window("cam0", 0, np.full(D, np.nan, np.float32)))
    assert counters["embeddings"] == 0 and "cam0" not in t.streams


def test_invented_cameras_are_bounded_and_configured_ones_are_kept():
    evicted = []
    pipeline = PipelineConfig.model_validate(
        {"cameras": [{"name": "cam0"}, {"name": "cam1"}], "events": {"max_cameras": 3, "max_len_s": None}}
    )
    vocab = Vocabulary(["x"], unit(np.ones(D))[None])
    counters: collections.Counter[str] = collections.Counter()
    t = SegmentTracker(
        pipeline.events,
        pipeline.encoder,
        pipeline.cameras,
        vocab,
        counters,
        on_evict=lambda cam, s: evicted.append(cam),
    )
    invented = [f"x{i}" for i in range(20)]
    for cam in ["cam0", *invented, "cam1"]:
        t.push(window(cam, 0, vocab.label_emb[0]))
    assert len(t.streams) == 3 and {"cam0", "cam1"} <= set(t.streams)
    assert counters["streams_evicted"] == len(invented) - 1 == len(evicted)


def test_a_vocabulary_must_match_its_labels_and_watch_list():
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"], np.ones((3, D), np.float32))
    watch = PipelineConfig.model_validate({"events": {"watch": [{"label": "w"}]}}).events.watch
    with pytest.raises(ValueError):
        Vocabulary(["a"], np.ones((1, D), np.float32), watch, None)
