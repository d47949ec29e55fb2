"""Sources that can never work are reported once, before anything starts (issue 34).

What the user saw: `perception up --source /etc/hostname` (or `notvideo.mp4`, `s.mcap`) passed start-up,
then `cannot open video ...: Invalid data found` was retried forever and the run exited 0; `--source 0`
without OpenCV likewise; an `rtsp://` stream that refused was retried and the `--duration` run exited 0
with 0 frames. Now each camera is opened (one frame decoded) first: a permanent error is one line and exit
2 with nothing started, a transient one is said once and retried, and a run that saw no frame exits 1.
"""

from __future__ import annotations

import socket
import sys

import numpy as np
from mcap.writer import Writer

from perception.data.video_io import write_video
from perception.nodes.sources import (
    FileCameraConfig,
    OpenCVCameraConfig,
    SyntheticCameraConfig,
    probe_cameras,
)

from .conftest import perception, pipeline_config, write_config


def refused_url() -> str:
    """An rtsp:// URL on a local port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"rtsp://127.0.0.1:{port}/stream"


def test_probe_tells_permanent_from_transient(tmp_path, monkeypatch):
    text = tmp_path / "notvideo.mp4"
    text.write_text("hello\n")
    mcap = tmp_path / "s.mcap"  # a recording given as a video
    with mcap.open("wb") as f:
        w = Writer(f)
        w.start()
        channel = w.register_channel("captions/cam0", "json", w.register_schema("Caption", "jsonschema", b"{}"))
        for i in range(20):
            w.add_message(channel, i, b'{"text": "a red circle"}', i)
        w.finish()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    clip = tmp_path / "clip.mp4"
    write_video(clip, [np.full((32, 32, 3), 100, np.uint8)] * 3, fps=10)
    monkeypatch.setitem(sys.modules, "cv2", None)  # OpenCV not importable, whether or not it is installed
    cams = [
        FileCameraConfig(name="a", path=str(text)),
        FileCameraConfig(name="b", path=str(mcap)),
        FileCameraConfig(name="c", path=str(empty)),
        OpenCVCameraConfig(name="d", index=0),
        FileCameraConfig(name="e", path=refused_url()),
        FileCameraConfig(name="f", path=str(clip)),
        SyntheticCameraConfig(name="g", duration_s=2, size=32),
    ]
    results = {r.camera.name: r for r in probe_cameras(cams)}
    for name in "abc":
        assert results[name].permanent and "cannot open video" in results[name].error, results[name]
    assert results["d"].permanent and "OpenCV is not installed" in results["d"].error
    assert not results["e"].permanent and "cannot open video rtsp://" in results["e"].error
    assert results["f"].error is None and results["g"].error is None


def test_up_refuses_a_source_that_can_never_work_with_exit_2(runtime_dir, random_checkpoint, tmp_path):
    text = tmp_path / "notvideo.mp4"
    text.write_text("hello\n")
    path = write_config(runtime_dir / "cfg.yaml", pipeline_config(runtime_dir, random_checkpoint))
    out = perception("up", str(path), "--source", str(text), "--duration", "30", timeout=60)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr  # said once, no retry loop
    assert "camera cam0" in lines[0] and "cannot work" in lines[0] and "Invalid data" in lines[0], lines
    assert sorted(p.name for p in runtime_dir.iterdir()) == ["cfg.yaml"]  # nothing started


def test_a_transient_source_is_retried_and_a_run_with_no_frame_exits_1(runtime_dir, random_checkpoint):
    cfg = pipeline_config(runtime_dir, random_checkpoint, nodes=["capture"])  # capture alone: what counts here
    path = write_config(runtime_dir / "cfg.yaml", cfg)
    out = perception("up", str(path), "--source", refused_url(), "--duration", "3", timeout=120)
    assert "is not available yet" in out.stderr and "retrying it every 0.5-10 s" in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr
    assert "no frame captured in the whole run" in out.stderr, out.stderr
