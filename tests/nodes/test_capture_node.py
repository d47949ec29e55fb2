"""The capture node in-process over a real bus: live synthetic frames with ground truth, and an unreadable
video file that is reported and retried with backoff instead of crashing anything."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
import structlog.testing

from perception.data.stream import ShapesStream
from perception.data.video_io import write_video
from perception.messages import Frame, GroundTruthSegment
from perception.nodes.capture import CaptureNode

from .harness import collect, node_config, running


async def test_synthetic_camera_publishes_live_frames_and_truth(runtime_dir, random_checkpoint):
    cams = [
        {"name": "left", "seed": 2, "duration_s": 5, "fps": 20, "size": 32},
        {"name": "right", "seed": 3, "duration_s": 5, "fps": 20, "size": 32},
    ]
    # windows use every 2nd frame (gcd of step 2 and stride 4): only those are rendered and sent
    config = node_config(runtime_dir, random_checkpoint, cameras=cams, encoder={"frame_step": 2, "stride_frames": 4})
    async with running(CaptureNode, config, ["frames/", "truth/"]) as (node, pub, sub):
        envs = await collect(sub, "", 40, timeout=30)
        assert node.counters["left.frames_unsent"] > 0
    frames = [e.msg for e in envs if isinstance(e.msg, Frame)]
    assert frames and all(f.index % 2 == 0 for f in frames)
    truth = [e.msg for e in envs if isinstance(e.msg, GroundTruthSegment)]
    assert {f.cam for f in frames} == {"left", "right"}
    ref = ShapesStream(seed=2, split="heldout", duration_s=5, fps=20, size=32)
    left = [f for f in frames if f.cam == "left"]
    assert all(b.index > a.index and b.t_capture_ns >= a.t_capture_ns for a, b in zip(left, left[1:]))
    f = left[-1]
    assert np.array_equal(f.image, ref.frame_at(f.index)) and f.stream_s == ref.time_of(f.index)
    first = [t for t in truth if t.cam == "left"][0]
    seg = ref.segments[0]
    assert (first.segment_id, first.start_s, first.end_s, first.text) == (0, 0.0, seg.end_s, seg.caption)
    assert first.slots == list(seg.slots)


async def test_a_file_camera_sends_the_encoder_its_size_and_viewers_full_frames(runtime_dir, random_checkpoint):
    """Real H.264 at 320x240: frames/ carries every 2nd frame as the model sees it (32x32, SMALL_MODEL: short side, centre crop),
    frames_full/ every 5th at 320x240 (full_fps 2 of 10); indices are the file's."""
    clip = runtime_dir / "clip.mp4"
    write_video(clip, [np.full((240, 320, 3), 8 * i, dtype=np.uint8) for i in range(30)], fps=10.0)
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=[{"name": "cam0", "type": "file", "path": str(clip)}],
        encoder={"frame_step": 2, "stride_frames": 2},
        capture={"full_fps": 2.0},
    )
    async with running(CaptureNode, config, ["frames/", "frames_full/"]) as (node, pub, sub):
        envs = await collect(sub, "", 15 + 6, timeout=30)
    small = [e.msg for e in envs if e.topic == "frames/cam0"]
    full = [e.msg for e in envs if e.topic == "frames_full/cam0"]
    assert [f.index for f in small] == list(range(0, 30, 2)) and {f.image.shape for f in small} == {(32, 32, 3)}
    assert [f.index for f in full] == list(range(0, 30, 5)) and {f.image.shape for f in full} == {(240, 320, 3)}


async def test_unreadable_video_is_reported_once_not_retried(runtime_dir, random_checkpoint):
    bad = runtime_dir / "broken.mp4"
    bad.write_bytes(b"\x00not a video\x00" * 64)
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=[{"name": "cam0", "type": "file", "path": str(bad), "retry_initial_s": 0.1, "retry_max_s": 0.4}],
    )
    with structlog.testing.capture_logs() as logs:
        async with running(CaptureNode, config, ["frames/"]) as (node, pub, sub):
            async with asyncio.timeout(20):
                while node.counters["cam0.source_errors"] < 1:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # three retries' worth of backoff: none comes
            assert node.counters["cam0.source_errors"] == 1 and node.counters["errors"] == 0  # alive, said once
    reports = [x for x in logs if x["event"].startswith("source")]
    assert [x["event"] for x in reports] == ["source cannot work, not retried"]
    assert "cannot open video" in reports[0]["error"] and "broken.mp4" in reports[0]["error"]


async def test_a_stream_that_refuses_is_reported_and_retried(runtime_dir, random_checkpoint):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"rtsp://127.0.0.1:{s.getsockname()[1]}/stream"  # nothing listens: refused, may come back
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=[{"name": "cam0", "type": "file", "path": url, "retry_initial_s": 0.1, "retry_max_s": 0.4}],
    )
    with structlog.testing.capture_logs() as logs:
        async with running(CaptureNode, config, ["frames/"]) as (node, pub, sub):
            async with asyncio.timeout(20):
                while node.counters["cam0.source_errors"] < 3:  # retried, with backoff, and still alive
                    await asyncio.sleep(0.05)
            assert node.ready.is_set() and node.counters["errors"] == 0  # not a crash: a reported, retried condition
    reports = [x for x in logs if x["event"] == "source unavailable, retrying"]
    assert len(reports) >= 3
    assert "cannot open video" in reports[0]["error"] and "Connection refused" in reports[0]["error"]
    assert [x["retry_in_s"] for x in reports[:3]] == [0.1, 0.2, 0.4]  # exponential backoff, capped


async def test_a_looping_file_keeps_its_stream_seconds_increasing(runtime_dir, random_checkpoint):
    """Issue 34: a looping file printed `[cam0 18.53- 9.20s]` (a caption ending before it started): each
    pass restarted the stream seconds at 0 while frame indices went on. Now the second pass follows the
    first in both."""
    clip = runtime_dir / "clip.mp4"
    write_video(clip, [np.full((32, 32, 3), 8 * i, dtype=np.uint8) for i in range(10)], fps=10.0)
    config = node_config(
        runtime_dir,
        random_checkpoint,
        cameras=[{"name": "cam0", "type": "file", "path": str(clip), "loop": True, "realtime": False}],
        encoder={"frame_step": 1, "stride_frames": 1},
    )
    async with running(CaptureNode, config, ["frames/"]) as (node, pub, sub):
        envs = await collect(sub, "frames/", 25, timeout=30)
    frames = [e.msg for e in envs]  # a `latest` topic: the first few may be gone before we subscribed
    assert frames[-1].index - frames[0].index >= 10  # across at least one loop
    times = [f.stream_s for f in frames]
    assert all(b > a for a, b in zip(times, times[1:])), times
    assert [f.stream_s for f in frames] == pytest.approx([f.index / 10.0 for f in frames])  # 10 fps throughout
