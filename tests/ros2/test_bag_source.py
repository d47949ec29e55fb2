"""The rosbag camera kind on bags written by rosbags' own rosbag2 writer: every image encoding, JPEG and
PNG, split bags, every rosbag2 compression mode, pose topics, and the errors a wrong topic gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.messages import Pose
from perception.nodes.feed import Want
from perception.nodes.sources import SourceUnavailableError, make_source, source_shorthand
from perception.ros2.cameras import RosbagCameraConfig
from perception.ros2.sample_bags import BagSpec, write_bag, write_split_bag
from tests.support import child_env

REPO = Path(__file__).resolve().parents[2]


def frames(n: int = 6, h: int = 24, w: int = 32) -> list[np.ndarray]:
    """Smooth colour ramps (pairs of columns equal, so 4:2:2 chroma loses nothing), different per frame."""
    ys, xs = np.mgrid[0:h, 0:w]
    out = []
    for k in range(n):
        r = (xs // 2 * 2 * 7 + 20 * k) % 256
        g = (ys * 9 + 10) % 256
        b = np.full_like(xs, 40 + 30 * k) % 256
        out.append(np.stack([r, g, b], axis=2).astype(np.uint8))
    return out


def read_all(cfg: RosbagCameraConfig, want: Want = Want(feed=False, full=True)):
    src = make_source(cfg)
    src.connect()
    try:
        items, poses = [], []
        while (item := src.read(want)) is not None:
            items.append(item)
            poses += src.take_poses()
        return items, poses, dict(src.counts)
    finally:
        src.close()


def grey(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return (0.299 * r + 0.587 * g + 0.114 * b).round().astype(np.uint8)


@pytest.mark.parametrize(
    ("encoding", "tolerance"),
    [("rgb8", 0), ("bgr8", 0), ("rgba8", 0), ("bgra8", 0), ("mono8", 0), ("mono16", 0), ("png", 0)]
    + [("yuv422", 3), ("yuv422_yuy2", 3), ("jpeg", 12)],
)
def test_each_encoding_decodes_to_the_recorded_rgb(tmp_path, encoding, tolerance):
    shots = frames()
    bag = write_bag(tmp_path / "bag", shots, BagSpec(encoding=encoding))
    items, _, counts = read_all(RosbagCameraConfig(path=str(bag)))
    assert [i.index for i in items] == list(range(len(shots)))
    assert counts == {}
    for item, rgb in zip(items, shots):
        want = np.repeat(grey(rgb)[..., None], 3, axis=2) if encoding.startswith("mono") else rgb
        assert item.full.shape == want.shape and item.full.dtype == np.uint8
        err = np.abs(item.full.astype(int) - want.astype(int))
        assert err.max() <= tolerance if tolerance == 0 else err.mean() <= tolerance, encoding


def test_stream_time_comes_from_header_stamps_and_the_bag_rate(tmp_path):
    bag = write_bag(tmp_path / "bag", frames(5), BagSpec(fps=10.0))
    src = make_source(RosbagCameraConfig(path=str(bag / "bag.mcap")))  # the file inside: read with its directory
    with src:
        times = [src.read().stream_s for _ in range(5)]
        assert src.read() is None
        assert src.fps == pytest.approx(10.0, rel=1e-3)
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_the_encoder_copy_is_scaled_to_the_model_side(tmp_path):
    bag = write_bag(tmp_path / "bag", frames(2, h=48, w=96), BagSpec(encoding="jpeg"))
    items, _, _ = read_all(RosbagCameraConfig(path=str(bag)), Want(feed=True, side=16))
    assert items[0].image.shape == (16, 32, 3) and items[0].full is None


@pytest.mark.parametrize("compression", ["file", "message", "storage"])
def test_every_rosbag2_compression_mode_reads(tmp_path, compression):
    shots = frames(4)
    bag = write_bag(tmp_path / "bag", shots, BagSpec(compression=compression))
    if compression == "file":
        assert any(p.name.endswith(".mcap.zstd") for p in bag.iterdir())
    items, _, _ = read_all(RosbagCameraConfig(path=str(bag)))
    assert all(np.array_equal(i.full, s) for i, s in zip(items, shots)) and len(items) == 4


def test_a_split_bag_reads_across_its_files(tmp_path):
    shots = frames(7)
    bag = write_split_bag(tmp_path / "split", shots, BagSpec(fps=10.0), parts=3)
    assert len(list(bag.glob("*.mcap"))) == 3
    items, _, _ = read_all(RosbagCameraConfig(path=str(bag)))
    assert len(items) == 7 and all(np.array_equal(i.full, s) for i, s in zip(items, shots))
    assert [round(i.stream_s, 3) for i in items] == [round(k * 0.1, 3) for k in range(7)]


def test_pose_topics_become_poses(tmp_path):
    bag = write_bag(tmp_path / "bag", frames(3), BagSpec(poses=True))
    cfg = RosbagCameraConfig(
        name="robot",
        path=str(bag),
        poses=[{"topic": "/odom"}, {"topic": "/pose"}, {"topic": "/tf", "parent": "map", "child": "base_link"}],
    )
    _, poses, _ = read_all(cfg)
    assert len(poses) == 9 and all(isinstance(p, Pose) and p.cam == "robot" for p in poses)
    by_source = {p.source: p for p in poses}  # the last of each
    assert set(by_source) == {"odometry:/odom", "pose:/pose", "tf:map->base_link"}
    odom, tf = by_source["odometry:/odom"], by_source["tf:map->base_link"]
    assert (odom.frame_id, odom.child_frame_id) == ("odom", "base_link")
    assert tf.frame_id == "map"  # the configured edge, not the odom -> base_link transform beside it
    angle = 0.05 * 2
    assert (odom.x, odom.y) == pytest.approx((2 * np.cos(angle), 2 * np.sin(angle)))
    assert odom.yaw == pytest.approx(angle + np.pi / 2)
    assert odom.stamp_ns == BagSpec().t0_ns + round(2 * 1e9 / 30)


def test_a_wrong_topic_or_type_names_the_topics_the_bag_has(tmp_path):
    bag = write_bag(tmp_path / "bag", frames(2), BagSpec(poses=True))
    missing = RosbagCameraConfig(path=str(bag), topic="/front/image")
    assert missing.preflight() == {
        "topic": f"bag {bag} has no topic /front/image; its topics: /camera/image_raw (sensor_msgs/msg/Image), "
        "/odom (nav_msgs/msg/Odometry), /pose (geometry_msgs/msg/PoseStamped), /tf (tf2_msgs/msg/TFMessage)"
    }
    wrong = RosbagCameraConfig(path=str(bag), topic="/odom")
    assert "topic /odom is nav_msgs/msg/Odometry, not sensor_msgs/msg/Image or" in wrong.preflight()["topic"]
    pose_wrong = RosbagCameraConfig(path=str(bag), poses=[{"topic": "/camera/image_raw"}])
    assert "is sensor_msgs/msg/Image, not nav_msgs/msg/Odometry" in pose_wrong.preflight()["topic"]


def test_a_damaged_message_is_a_counted_reject(tmp_path):
    """A truncated Image (its data shorter than height x step) is skipped and counted; the rest play."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from perception.ros2.bag import typestore

    store = typestore()
    shots = frames(3)
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        from perception.ros2.sample_bags import encode_image

        for k, rgb in enumerate(shots):
            _, msg = encode_image(store, rgb, "rgb8", 10**9 * (k + 1))
            raw = store.serialize_cdr(msg, "sensor_msgs/msg/Image")
            w.write(conn, 10**9 * (k + 1), raw[:200] if k == 1 else raw)  # a cut CDR sample
    items, _, counts = read_all(RosbagCameraConfig(path=str(tmp_path / "bag")))
    assert len(items) == 2 and counts == {"rejected": 1}
    assert np.array_equal(items[1].full, shots[2])


def test_source_shorthand_reads_bags_and_ros2_topics(tmp_path):
    assert source_shorthand("run.mcap:/camera/image_raw") == {
        "type": "rosbag",
        "path": "run.mcap",
        "topic": "/camera/image_raw",
    }
    assert source_shorthand("run.mcap") == {"type": "rosbag", "path": "run.mcap"}
    assert source_shorthand("ros2:/camera/image_raw") == {"type": "ros2", "topic": "/camera/image_raw"}
    assert source_shorthand("rtsp://cam:554/stream") == {"type": "file", "path": "rtsp://cam:554/stream"}


def test_up_with_a_wrong_bag_topic_is_one_line_and_exit_2(tmp_path):
    bag = write_bag(tmp_path / "bag", frames(2))
    proc = subprocess.run(
        [sys.executable, "-m", "perception.cli", "up", "configs/tiny-cpu.yaml", "--source", f"{bag}:/nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert "has no topic /nope; its topics: /camera/image_raw (sensor_msgs/msg/Image)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bag_without_the_topic_is_a_permanent_source_error(tmp_path):
    """The capture node retries only what may come back; a bag file does not grow the topic it lacks."""
    bag = write_bag(tmp_path / "bag", frames(2))
    source = make_source(RosbagCameraConfig(path=str(bag), topic="/nope"))
    with pytest.raises(SourceUnavailableError, match="has no topic /nope") as err:
        source.connect()
    assert err.value.permanent
