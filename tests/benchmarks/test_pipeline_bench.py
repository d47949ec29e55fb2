"""`perception bench pipeline`'s phase configs: a camera fast enough to saturate, and the events section
passed through unchanged, its seconds spanning the same stream time when windows come 107x more often."""

from __future__ import annotations

import pytest

from benchmarks.pipeline.bench import _phase_config, saturating_fps
from perception.config import load_config
from perception.nodes.segmenter import segment_steps
from perception.nodes.segments import window_cadence_s


def test_the_saturating_camera_outruns_the_bare_loop():
    assert saturating_fps(100.0) == 240.0  # never below the old fixed rate
    assert saturating_fps(263.0) == 400.0  # 1.5 x, rounded up to 10 fps
    assert saturating_fps(400.0) >= 1.5 * 400.0


def test_phase_configs_keep_the_events_seconds(tmp_path):
    base = load_config(None)
    ev = base.pipeline.events
    live = _phase_config(base, tmp_path / "l")
    sat = _phase_config(base, tmp_path / "s", fps=400.0, stride_frames=1)
    assert live.pipeline.events == ev and sat.pipeline.events == ev
    assert live.pipeline.cameras[0].type == "synthetic" and live.pipeline.cameras[0].fps == 30.0
    assert sat.pipeline.encoder.stride_frames == 1 and sat.pipeline.cameras[0].fps == 400.0
    assert str(tmp_path / "s") == str(sat.bus.runtime_dir)

    def spans(cfg) -> tuple[float, float]:  # (min, max) segment length in seconds, as the events node sets it
        cadence = window_cadence_s(cfg.pipeline.cameras[0], cfg.pipeline.encoder)
        lo, hi = segment_steps(ev.min_len_s, ev.max_len_s, cadence)
        return lo * cadence, hi * cadence

    # the saturated phase has 400 / (30 / 8) = 107x as many windows per second, each a step: 107x the steps
    assert segment_steps(ev.min_len_s, ev.max_len_s, 1 / 400)[1] == 6400
    assert spans(sat)[1] == pytest.approx(ev.max_len_s) and spans(live)[1] == pytest.approx(ev.max_len_s, rel=0.01)
    assert spans(sat)[0] == pytest.approx(ev.min_len_s) and spans(live)[0] == pytest.approx(ev.min_len_s, rel=0.1)
