"""A robot's rosbag2 recording (written by rosbags' own writer) through the pipeline: `perception test` on
the bag (deterministic: two runs are the same run), `perception info` on it, and the capture node playing
it onto frames/ and pose/."""

from __future__ import annotations

import json
import subprocess
import sys

import msgpack
import numpy as np
import pytest
import yaml
from mcap.reader import make_reader

from perception.config import AppConfig
from perception.data.stream import ShapesStream
from perception.messages import Frame, Pose
from perception.nodes.capture import CaptureNode
from perception.ros2.sample_bags import BagSpec, write_bag
from perception.testing import run_test
from tests.support import REPO, child_env, short_tmp, small_random_checkpoint

FPS = 10.0


def perception(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *args],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def robot():
    """(dir, bag of a ShapesWorld stream as a robot camera's JPEG topic with odometry, config path)."""
    rdir = short_tmp("rb-")
    checkpoint = small_random_checkpoint(rdir / "ckpt", seed=0)
    stream = ShapesStream(seed=3, split="heldout", duration_s=6, fps=FPS, size=48)
    shots = [stream.frame_at(i) for i in range(60)]
    bag = write_bag(rdir / "robot_run", shots, BagSpec(encoding="jpeg", fps=FPS, poses=True))
    cfg = {
        "name": "bag-test",
        "bus": {"runtime_dir": str(rdir), "stats_interval_s": 0.5, "ready_timeout_s": 30.0},
        "model": {"checkpoint": str(checkpoint), "device": "cpu", "dtype": "float32"},
        "pipeline": {
            "nodes": ["capture", "encoder", "events", "decoder"],
            "cameras": [{"name": "front", "fps": FPS}],
            "encoder": {"threads": 1, "frame_step": 1, "stride_frames": 2},
            "events": {"threshold": 3.0, "min_len_s": 0.4, "max_len_s": 2.0},
            "decoder": {"threads": 1},
        },
    }
    path = rdir / "robot.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return rdir, bag, path


def bodies(path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    with open(path, "rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages():
            out.setdefault(channel.topic.split("/")[0], []).append(msgpack.unpackb(message.data)[0]["body"])
    return out


def test_perception_test_runs_a_bag_and_a_second_run_is_the_same(robot):
    rdir, bag, cfg = robot
    first = perception("test", str(bag / "robot_run.mcap"), "--topic", "/camera/image_raw", "--config", str(cfg))
    assert first.returncode == 0, first.stderr[-3000:]
    out = rdir / "robot_run.test.mcap"  # beside the bag directory the .mcap is read with
    assert out.is_file()
    got = bodies(out)
    embeddings = got["embeddings"]
    # every frame is used (frame_step 1, stride 2): 60 images give about one window per 2 frames
    assert len(embeddings) >= 28 and [e["window"] for e in embeddings] == list(range(len(embeddings)))
    t0 = BagSpec().t0_ns
    assert embeddings[0]["start_ns"] == t0  # capture times are the images' header stamps
    stamps = {t0 + round(k * 1e9 / FPS) for k in range(60)}
    assert {e["end_ns"] for e in embeddings} <= stamps and max(e["end_ns"] for e in embeddings) >= t0 + 5_800_000_000
    assert got["captions"] and all(c["cam"] == "front" for c in got["captions"])

    second = perception(
        "test",
        str(bag),
        "--config",
        str(cfg),
        "--against",
        str(out),
        "--out",
        str(rdir / "again.mcap"),
        "--exact",
        "--json",
        str(rdir / "diff.json"),
    )
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    again = bodies(rdir / "again.mcap")
    assert [e["embedding"] for e in again["embeddings"]] == [e["embedding"] for e in embeddings]
    assert [c["text"] for c in again["captions"]] == [c["text"] for c in got["captions"]]
    assert json.loads((rdir / "diff.json").read_text())["failed"] is False


def test_perception_test_on_a_wrong_topic_names_the_bag_topics(robot):
    _, bag, cfg = robot
    proc = perception("test", str(bag), "--topic", "/odom", "--config", str(cfg))
    assert proc.returncode == 2
    assert "topic /odom is nav_msgs/msg/Odometry, not sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage" in (
        proc.stderr
    )
    assert "/camera/image_raw (sensor_msgs/msg/CompressedImage)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_perception_info_lists_a_bags_topics_and_types(robot):
    _, bag, _ = robot
    proc = perception("info", str(bag), "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    topics = {t["topic"]: (t["type"], t["count"]) for t in json.loads(proc.stdout)["topics"]}
    assert topics == {
        "/camera/image_raw": ("sensor_msgs/msg/CompressedImage", 60),
        "/odom": ("nav_msgs/msg/Odometry", 60),
        "/pose": ("geometry_msgs/msg/PoseStamped", 60),
        "/tf": ("tf2_msgs/msg/TFMessage", 60),
    }


async def test_capture_plays_a_bag_onto_frames_and_pose(robot, runtime_dir):
    _, bag, _ = robot
    cfg = AppConfig.model_validate(
        {
            "bus": {"runtime_dir": str(runtime_dir), "latest_prefixes": []},  # every frame, none conflated
            "model": {"checkpoint": "/nonexistent"},  # capture reads only the model's input size, else sends as is
            "pipeline": {
                "capture": {"send": "all"},
                "cameras": [
                    {
                        "name": "front",
                        "type": "rosbag",
                        "path": str(bag),
                        "realtime": False,
                        "poses": [{"topic": "/odom"}, {"topic": "/tf", "parent": "map", "child": "base_link"}],
                    }
                ],
            },
        }
    )
    result = await run_test(CaptureNode(cfg), until=lambda r: len(r.of(Frame)) + len(r.of(Pose)) >= 180, timeout_s=60)
    frames = result.of(Frame)
    assert [f.index for f in frames] == list(range(60))
    assert frames[0].image.shape == (48, 48, 3)
    assert frames[10].stream_s == pytest.approx(1.0)
    poses = result.of(Pose)
    assert {p.source for p in poses} == {"odometry:/odom", "tf:map->base_link"}
    assert len(poses) == 120 and all(np.isfinite(p.yaw) for p in poses)
    assert {e.topic for e in result.published if isinstance(e.msg, Pose)} == {"pose/front"}
