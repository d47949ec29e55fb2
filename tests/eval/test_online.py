"""The online causal segmenter: bounded latency, no future peeking, planted boundaries found."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.eval.online import segment_online
from perception.nodes.segmenter import OnlineSegmenter, OnlineSegmenterConfig
from tests.eval.streams import planted_stream


def _feed(embs, times, cfg):
    seg = OnlineSegmenter(cfg)
    out = []
    for t, e in zip(times, embs):
        out.extend(seg.push(float(t), e))
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    window=st.integers(1, 6),
    confirm=st.integers(1, 4),
    min_len=st.integers(1, 6),
    threshold=st.floats(0.5, 40.0),
    cut=st.floats(0.1, 0.95),
)
def test_decisions_up_to_t_minus_latency_do_not_depend_on_later_inputs(seed, window, confirm, min_len, threshold, cut):
    planted = planted_stream(seed % 50, duration_s=30.0, noise=0.7)
    embs, times = planted.stream.embs, planted.stream.times
    cfg = OnlineSegmenterConfig(threshold=threshold, window=window, confirm=confirm, min_len=min_len, max_len=40)
    p = max(1, int(cut * len(times)))
    full = _feed(embs, times, cfg)
    # the prefix is followed by different future inputs: any peeking would change earlier decisions
    rng = np.random.default_rng(seed)
    other_future = rng.normal(scale=3.0, size=embs[p:].shape)
    mixed = _feed(np.concatenate([embs[:p], other_future]), times, cfg)
    prefix = _feed(embs[:p], times[:p], cfg)
    for b in full + mixed + prefix:
        assert b.index <= b.declared_index <= b.index + cfg.latency
    assert prefix == [b for b in full if b.declared_index < p]
    assert prefix == [b for b in mixed if b.declared_index < p]
    # latency bound: every boundary before p - latency is already declared from the prefix alone
    settled = p - 1 - cfg.latency
    assert [b.index for b in full if b.index <= settled] == [b.index for b in prefix if b.index <= settled]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_finds_planted_boundaries_within_latency(seed):
    planted = planted_stream(seed, duration_s=90.0, noise=0.5)
    cfg = OnlineSegmenterConfig()
    _, bounds = segment_online(planted.stream.embs, planted.stream.times, cfg)
    assert [b.index for b in bounds] == planted.boundaries
    assert all(b.declared_index - b.index <= cfg.latency for b in bounds)


def test_noise_alone_does_not_fire():
    rng = np.random.default_rng(0)
    embs = rng.normal(size=(1, 16)) + 0.5 * rng.normal(size=(400, 16))
    _, bounds = segment_online(embs, np.arange(400) * 0.25)
    assert bounds == []


def test_threshold_trades_rate_for_fewer_decodes():
    planted = planted_stream(5, duration_s=60.0, noise=0.8)
    counts = [
        len(segment_online(planted.stream.embs, planted.stream.times, OnlineSegmenterConfig(threshold=t))[0])
        for t in (0.5, 2.0, 8.0, 200.0)
    ]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_min_and_max_len_are_respected():
    planted = planted_stream(7, duration_s=60.0, noise=0.5)
    cfg = OnlineSegmenterConfig(threshold=0.01, min_len=3, max_len=10)
    segs, _ = segment_online(planted.stream.embs, planted.stream.times, cfg)
    assert all(len_ <= 10 for len_ in (s.end - s.start for s in segs))
    assert all(s.end - s.start >= 3 for s in segs[:-1])  # the last one is cut by the stream's end
    constant = np.ones((50, 4))
    segs, bounds = segment_online(constant, np.arange(50.0), OnlineSegmenterConfig(max_len=20))
    assert [b.index for b in bounds] == [20, 40]


def test_bad_push_raises_and_keeps_state():
    seg = OnlineSegmenter(OnlineSegmenterConfig(window=1, confirm=1, min_len=1, threshold=1.0))
    for i in range(5):
        seg.push(float(i), np.zeros(3) + 0.01 * i)
    with pytest.raises(ValueError, match="NaN"):
        seg.push(5.0, np.array([np.nan, 0, 0]))
    with pytest.raises(ValueError, match="dims"):
        seg.push(5.0, np.zeros(4))
    with pytest.raises(ValueError, match="increase"):
        seg.push(4.0, np.zeros(3))
    assert seg.steps == 5
    assert [b.index for b in seg.push(5.0, np.full(3, 10.0))] == [5]


def test_config_validation():
    with pytest.raises(ValueError):
        OnlineSegmenterConfig(window=0)
    with pytest.raises(ValueError):
        OnlineSegmenterConfig(min_len=5, max_len=3)
    assert OnlineSegmenterConfig(window=4, confirm=2).latency == 4


def test_a_noise_free_start_does_not_make_every_later_drift_a_boundary():
    """A rendered scene repeats its embedding exactly; the noise estimate must not lock at zero and turn
    the small drift of a moving object into a boundary at every step."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    drift = 1e-3 * np.cumsum(rng.normal(size=(80, 16)), axis=0)  # a slow wander, 1e-3 of the norm per step
    embs = np.concatenate([np.repeat(a[None], 10, 0), a + drift, b + drift[-1] + drift[:60]])  # one real change
    times = np.arange(len(embs)) * 0.25
    _, bounds = segment_online(embs, times, OnlineSegmenterConfig())
    assert [b.index for b in bounds] == [90]
    with pytest.raises(ValueError, match="noise_floor"):
        OnlineSegmenterConfig(noise_floor=0)
