"""`perception bench pipeline`'s phase configs: a camera fast enough to saturate, and the events node's
step counts kept at the configured stream time when windows come 64x more often."""

from __future__ import annotations

import pytest

from perception.config import load_config
from perception.nodes.bench import _phase_config, saturating_fps


def test_the_saturating_camera_outruns_the_bare_loop():
    assert saturating_fps(100.0) == 240.0  # never below the old fixed rate
    assert saturating_fps(263.0) == 400.0  # 1.5 x, rounded up to 10 fps
    assert saturating_fps(400.0) >= 1.5 * 400.0


def test_phase_configs_rescale_the_events_steps_to_stream_time(tmp_path):
    base = load_config(None)
    ev = base.pipeline.events
    live = _phase_config(base, tmp_path / "l")
    assert (live.pipeline.events.min_len, live.pipeline.events.max_len) == (ev.min_len, ev.max_len)
    assert live.pipeline.cameras[0].source == "synthetic" and live.pipeline.cameras[0].fps == 30.0
    sat = _phase_config(base, tmp_path / "s", fps=400.0, stride_frames=1)
    scale = (base.pipeline.encoder.stride_frames / 30.0) / (1 / 400.0)  # live window period / saturated one
    assert sat.pipeline.encoder.stride_frames == 1 and sat.pipeline.cameras[0].fps == 400.0
    assert sat.pipeline.events.min_len == round(ev.min_len * scale)
    assert sat.pipeline.events.max_len == round(ev.max_len * scale)
    # the same stream time: max_len windows at the saturated cadence span what they span live
    assert sat.pipeline.events.max_len / 400.0 == pytest.approx(ev.max_len * base.pipeline.encoder.stride_frames / 30.0, rel=1e-3)
    assert str(tmp_path / "s") == str(sat.bus.runtime_dir)
