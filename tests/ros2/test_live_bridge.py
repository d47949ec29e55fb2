"""The live bridge against a plain Cyclone DDS participant using ROS 2's names and QoS (tests/ros2/
dds_peer.py), all on loopback: Image frames in -> frames/<cam>; a whole pipeline's captions and events
back out as perception_msgs and std_msgs/String; a flood of malformed samples is counted and bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from tests.ros2.dds_peer import Peer, dds_env, image, malformed, wait_matched

ENV = dds_env()
os.environ.update(ENV)  # before any participant of this process exists: Cyclone reads it once

from perception.config import AppConfig  # noqa: E402
from perception.data.stream import ShapesStream  # noqa: E402
from perception.messages import Frame  # noqa: E402
from perception.nodes.capture import CaptureNode  # noqa: E402
from perception.ros2 import interfaces as ifc  # noqa: E402
from perception.testing import run_test  # noqa: E402
from tests.support import REPO, child_env, short_tmp, small_random_checkpoint  # noqa: E402

DOMAIN = int(ENV["ROS_DOMAIN_ID"])


def shapes(n: int, size: int = 48):
    stream = ShapesStream(seed=3, split="heldout", duration_s=max(4.0, n / 10 + 1), fps=10, size=size)
    return [stream.frame_at(i % stream.num_frames) for i in range(n)]


async def test_frames_arrive_and_a_malformed_flood_is_counted_and_bounded(runtime_dir):
    cfg = AppConfig.model_validate(
        {
            "bus": {"runtime_dir": str(runtime_dir), "latest_prefixes": []},
            "model": {"checkpoint": "/nonexistent"},
            "pipeline": {"capture": {"send": "all"}, "cameras": [{"name": "robot", "type": "ros2", "topic": "/cam"}]},
        }
    )
    peer = Peer(DOMAIN)
    writer = peer.image_writer("/cam")
    shots = shapes(20)
    sent_after_flood = []

    def robot() -> None:
        wait_matched(writer)
        for k in range(2000):  # as fast as the writer goes
            writer.write(malformed(k))
        for k, rgb in enumerate(shots):
            writer.write(image(rgb, stamp_ns=10**18 + k))
            sent_after_flood.append(k)
            time.sleep(0.05)

    thread = threading.Thread(target=robot, daemon=True)
    thread.start()

    def done(r) -> bool:  # the last picture sent after the flood came through
        return any((f.image == shots[-1]).all() for f in r.of(Frame)[-3:])

    result = await run_test(CaptureNode(cfg), until=done, timeout_s=90)
    thread.join(timeout=30)
    frames = result.of(Frame)
    assert len(frames) >= 15, result.counters  # the node kept working through the flood
    assert all(f.cam == "robot" and f.image.shape == (48, 48, 3) for f in frames)
    assert done(result)  # pixel for pixel
    rejected = result.counters.get("robot.rejected", 0)
    dropped = result.counters.get("robot.dropped", 0)
    assert rejected >= 1  # malformed samples reached the decoder and were counted, not raised
    assert rejected + dropped <= 2000  # best effort, keep last 5: the rest never queued anywhere


@pytest.fixture(scope="module")
def pipeline():
    """`perception up --source ros2:/camera/image_raw --ros2` with a small model, in its own domain."""
    rdir = short_tmp("r2-")
    checkpoint = small_random_checkpoint(rdir / "ckpt", seed=0)
    cfg = {
        "name": "ros2-live",
        "bus": {"runtime_dir": str(rdir), "stats_interval_s": 0.5, "ready_timeout_s": 30.0},
        "model": {"checkpoint": str(checkpoint), "device": "cpu", "dtype": "float32"},
        "pipeline": {
            "nodes": ["capture", "encoder", "events", "decoder"],
            "cameras": [{"name": "front"}],
            "encoder": {"threads": 1, "frame_step": 1, "stride_frames": 2},
            "events": {
                "threshold": 3.0,
                "min_len_s": 0.4,
                "max_len_s": 1.5,
                "watch": [{"label": "the red circle grows", "enter": -1.0, "leave": -1.0}],
            },
            "decoder": {"threads": 1},
        },
    }
    path = rdir / "live.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "up", str(path), "--source", "ros2:/camera/image_raw", "--ros2"],
        cwd=REPO,
        env={**child_env(), **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_ros2_peer_sends_frames_and_gets_captions_and_events_back(pipeline):
    peer = Peer(DOMAIN)
    writer = peer.image_writer()
    readers = {
        "captions": peer.reader("/perception/front/captions", ifc.Caption),
        "events": peer.reader("/perception/front/events", ifc.Event),
        "watches": peer.reader("/perception/front/watches", ifc.WatchCrossing),
        "captions_json": peer.reader("/perception/front/captions_json", ifc.String),
        "events_json": peer.reader("/perception/front/events_json", ifc.String),
    }
    got: dict[str, list] = {k: [] for k in readers}
    shots = shapes(40)
    t_first = time.time_ns()
    deadline = time.monotonic() + 240  # model load and a cold start on a loaded machine
    wait_matched(writer, timeout_s=180)
    k = 0
    while time.monotonic() < deadline and not all(got.values()):
        assert pipeline.poll() is None, pipeline.stderr.read()[-3000:]
        writer.write(image(shots[k % len(shots)]))
        k += 1
        for kind, reader in readers.items():
            got[kind] += reader.take(N=64)
        time.sleep(0.1)
    assert all(got.values()), {kind: len(v) for kind, v in got.items()}
    caption = got["captions"][0]
    assert caption.camera == "front" and caption.header.frame_id == "front" and caption.text
    stamp = caption.header.stamp.sec * 10**9 + caption.header.stamp.nanosec
    assert t_first - 5 * 10**9 < stamp < time.time_ns()  # the capture time of the segment's last frame
    assert caption.latency_ms > 0
    as_json = json.loads(got["captions_json"][0].data)
    assert as_json["topic"] == "captions/front" and as_json["cam"] == "front" and as_json["text"]
    event = got["events"][0]
    assert event.camera == "front" and len(event.labels) == len(event.scores) >= 1
    crossing = got["watches"][0]
    assert crossing.watch == "the red circle grows" and crossing.active is True
    kinds = {json.loads(s.data)["kind"] for s in got["events_json"]}
    assert kinds == {"segment", "watch"}


async def test_the_output_node_alone_keeps_writers_for_a_bounded_set_of_cameras(runtime_dir):
    """`perception ros2`'s node fed captions for more camera names than max_cameras (names any bus
    publisher can invent): the newest cameras are published, the least recently heard lose their writers."""
    from perception.messages import Caption
    from perception.nodes.ros2_out import Ros2OutNode

    cfg = AppConfig.model_validate(
        {"bus": {"runtime_dir": str(runtime_dir)}, "pipeline": {"ros2": {"namespace": "/robot1", "max_cameras": 2}}}
    )
    peer = Peer(DOMAIN)
    reader = peer.reader("/robot1/c2/captions", ifc.Caption)
    json_reader = peer.reader("/robot1/c2/captions_json", ifc.String)

    def caption(cam: str, k: int) -> Caption:
        now = time.time_ns()
        return Caption(
            cam=cam,
            segment_id=k,
            text=f"seen by {cam}",
            start_ns=now - 10**9,
            end_ns=now,
            t_capture_ns=now,
            latency_ms=5.0,
        )

    got: list = []

    def heard(_r) -> bool:
        got.extend(reader.take(N=16))
        return bool(got)

    inputs = [caption(c, k) for k, c in enumerate(["c0", "c1", "c2"])]
    node = Ros2OutNode(cfg)
    result = await run_test(node, inputs * 20, until=heard, timeout_s=60)
    assert got[0].camera == "c2" and got[0].text == "seen by c2" and got[0].header.frame_id == "c2"
    assert json.loads(json_reader.take(N=1)[0].data)["text"] == "seen by c2"
    assert result.counters["cameras_evicted"] >= 1
    assert len(node.writers) == 2 and node.extra_stats() == {"ros2_cameras": 2.0}
