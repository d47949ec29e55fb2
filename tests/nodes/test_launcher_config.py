"""`perception up` refuses a bad config before starting any process, naming every problem by its path."""

from __future__ import annotations

import pytest

from perception.config import ConfigError
from perception.nodes.launcher import prepare_config

from .conftest import perception, pipeline_config, write_config


def test_bad_config_fails_before_any_process_starts(runtime_dir, random_checkpoint):
    cfg = pipeline_config(runtime_dir, random_checkpoint,
                          cameras=[{"name": "cam 0", "fps": -1}, {"name": "cam1", "source": "/no/such.mp4"}],
                          encoder={"max_batch": 0}, events={"watch": [{"label": "x", "enter": 0.2, "leave": 0.6}]},
                          nodes=["capture", "teleporter"])
    path = write_config(runtime_dir / "bad.yaml", cfg)
    out = perception("up", str(path), "--duration", "1")
    assert out.returncode == 2
    for where in ("pipeline.cameras.0.name", "pipeline.cameras.0.fps", "pipeline.encoder.max_batch",
                  "pipeline.events.watch.0", "pipeline.nodes"):
        assert where in out.stderr, (where, out.stderr)
    assert "teleporter" in out.stderr
    assert sorted(p.name for p in runtime_dir.iterdir()) == ["bad.yaml"]  # no socket, no config copy: nothing ran


def test_missing_video_and_checkpoint_are_reported_with_their_paths(runtime_dir, random_checkpoint, tmp_path):
    cfg = pipeline_config(runtime_dir, tmp_path / "no-checkpoint")
    path = write_config(runtime_dir / "cfg.yaml", cfg)
    with pytest.raises(ConfigError) as err:
        prepare_config(path, source=str(tmp_path / "missing.mp4"))
    text = str(err.value)
    assert "pipeline.cameras.0.source: video file not found" in text and "missing.mp4" in text
    assert "model.checkpoint" in text and "no-checkpoint" in text
    ok = prepare_config(write_config(runtime_dir / "ok.yaml", pipeline_config(runtime_dir, random_checkpoint)),
                        source="3")
    assert ok.pipeline.cameras[0].kind == "camera"


def test_ask_without_a_pipeline_says_so(runtime_dir, random_checkpoint):
    path = write_config(runtime_dir / "cfg.yaml", pipeline_config(runtime_dir, random_checkpoint))
    out = perception("ask", "what colour is the circle?", "--choices", "red,blue", "--config", str(path),
                     "--timeout", "1")
    assert out.returncode == 1 and "no answer from the pipeline" in out.stderr
    out = perception("ask", "what?", "--choices", ",,", "--config", str(path))
    assert out.returncode == 2 and "--choices needs" in out.stderr


@pytest.mark.parametrize("name", ["tiny-cpu.yaml", "vjepa2-vitl.yaml", "two-host.yaml"])
def test_shipped_configs_validate(name):
    config = prepare_config(name)
    assert config.pipeline.cameras and config.pipeline.nodes
    if name == "two-host.yaml":
        assert config.bus.curve.enabled and config.bus.endpoint("pub").startswith("tcp://")
        assert "capture" not in config.pipeline.nodes  # the robot host runs capture
