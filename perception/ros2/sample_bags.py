"""rosbag2 bags made with rosbags' own writer (`rosbags.rosbag2.Writer`, the maintained library, not our
code): what tests, benchmarks and docs/ros2.md feed the bag source and `perception test`. Images are
ShapesWorld frames (or any RGB arrays) encoded the way a ROS camera driver would."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.ros2 import names
from perception.ros2.bag import typestore


@dataclass(frozen=True)
class BagSpec:
    topic: str = "/camera/image_raw"
    encoding: str = "rgb8"  # an Image encoding, or "jpeg" / "png" for CompressedImage
    compression: str = "none"  # none | file | message | storage (zstd MCAP chunks)
    fps: float = 30.0
    t0_ns: int = 1_700_000_000 * 10**9
    poses: bool = False  # also /odom (Odometry), /pose (PoseStamped), /tf (map -> base_link)


def encode_image(store, rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera"):
    """(msgtype, message) of uint8 [H, W, 3] RGB `rgb` in `encoding`, as a driver would publish it."""
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=_time(store, stamp_ns), frame_id=frame_id)
    h, w = rgb.shape[:2]
    if encoding in ("jpeg", "png"):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=encoding.upper(), **({"quality": 95} if encoding == "jpeg" else {}))
        data = np.frombuffer(buf.getvalue(), np.uint8)
        return names.COMPRESSED_IMAGE, t[names.COMPRESSED_IMAGE](header=header, format=encoding, data=data)
    pixels = to_encoding(rgb, encoding)
    step = pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1) * pixels.itemsize
    data = np.frombuffer(pixels.tobytes(), np.uint8)
    msg = t[names.IMAGE](header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=data)
    return names.IMAGE, msg


def to_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB -> the pixel layout of `encoding` (little-endian for 16-bit)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    grey = (0.299 * r + 0.587 * g + 0.114 * b).round().astype(np.uint8)
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[..., ::-1].copy()
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2)
    if encoding == "bgra8":
        return np.concatenate([rgb[..., ::-1], alpha], axis=2)
    if encoding == "mono8":
        return grey
    if encoding == "mono16":
        return grey.astype(np.uint16) * 257
    if encoding in ("yuv422", "yuv422_yuy2"):
        y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
        u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
        v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
        u2 = (u[:, 0::2] + u[:, 1::2]) / 2
        v2 = (v[:, 0::2] + v[:, 1::2]) / 2
        y0, y1 = y[:, 0::2], y[:, 1::2]
        quad = [u2, y0, v2, y1] if encoding == "yuv422" else [y0, u2, y1, v2]
        return np.clip(np.stack(quad, axis=2).round(), 0, 255).astype(np.uint8).reshape(rgb.shape[0], -1, 2)
    raise ValueError(f"no sample encoder for {encoding}")


def _time(store, ns: int):
    return store.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)


def pose_messages(store, stamp_ns: int, k: int) -> list[tuple[str, str, object]]:
    """(topic, msgtype, msg): the robot driving a circle of radius 2 m, one pose per image."""
    t = store.types
    angle = 0.05 * k
    x, y, yaw = 2 * math.cos(angle), 2 * math.sin(angle), angle + math.pi / 2
    point = t["geometry_msgs/msg/Point"](x=x, y=y, z=0.0)
    vec = t["geometry_msgs/msg/Vector3"](x=x, y=y, z=0.0)
    q = t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
    pose = t["geometry_msgs/msg/Pose"](position=point, orientation=q)

    def header(frame: str):
        return t["std_msgs/msg/Header"](stamp=_time(store, stamp_ns), frame_id=frame)

    cov = np.zeros(36, np.float64)
    twist = t["geometry_msgs/msg/TwistWithCovariance"](
        twist=t["geometry_msgs/msg/Twist"](
            linear=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            angular=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        ),
        covariance=cov,
    )
    odom = t[names.ODOMETRY](
        header=header("odom"),
        child_frame_id="base_link",
        pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=cov),
        twist=twist,
    )
    stamped = t[names.POSE_STAMPED](header=header("map"), pose=pose)
    other = t["geometry_msgs/msg/TransformStamped"](
        header=header("odom"),
        child_frame_id="base_link",
        transform=t["geometry_msgs/msg/Transform"](translation=vec, rotation=q),
    )
    wanted = t["geometry_msgs/msg/TransformStamped"](
        header=header("map"),
        child_frame_id="base_link",
        transform=t["geometry_msgs/msg/Transform"](translation=vec, rotation=q),
    )
    tf = t[names.TF](transforms=[other, wanted])
    return [("/odom", names.ODOMETRY, odom), ("/pose", names.POSE_STAMPED, stamped), ("/tf", names.TF, tf)]


def write_bag(path: str | Path, frames: Iterable[np.ndarray], spec: BagSpec = BagSpec()) -> Path:
    """A rosbag2 bag directory (MCAP storage) at `path` with `frames` on `spec.topic`; returns `path`."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    store = typestore()
    path = Path(path)
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    mode = {"file": CompressionMode.FILE, "message": CompressionMode.MESSAGE, "storage": CompressionMode.STORAGE}
    if spec.compression != "none":
        writer.set_compression(mode[spec.compression], CompressionFormat.ZSTD)
    msgtype = names.COMPRESSED_IMAGE if spec.encoding in ("jpeg", "png") else names.IMAGE
    with writer:
        image = writer.add_connection(spec.topic, msgtype, typestore=store)
        conns = {}
        if spec.poses:
            for topic, ptype in (("/odom", names.ODOMETRY), ("/pose", names.POSE_STAMPED), ("/tf", names.TF)):
                conns[topic] = writer.add_connection(topic, ptype, typestore=store)
        for k, rgb in enumerate(frames):
            stamp = spec.t0_ns + round(k * 1e9 / spec.fps)
            if spec.poses:
                for topic, ptype, msg in pose_messages(store, stamp, k):
                    writer.write(conns[topic], stamp, store.serialize_cdr(msg, ptype))
            mtype, msg = encode_image(store, rgb, spec.encoding, stamp)
            writer.write(image, stamp + 1000, store.serialize_cdr(msg, mtype))
    return path


def write_split_bag(path: str | Path, frames: list[np.ndarray], spec: BagSpec = BagSpec(), parts: int = 2) -> Path:
    """A bag split into `parts` files, as `ros2 bag record --max-bag-size` leaves it: rosbags' writer does
    not split, so each part is a bag of its own written by it, and the parts' files are gathered into the
    first one's directory with its metadata.yaml listing them all (the fields rosbag2 writes for a split)."""
    import shutil

    import yaml

    path = Path(path)
    size = math.ceil(len(frames) / parts)
    dirs = []
    for p in range(parts):
        part_spec = BagSpec(**{**spec.__dict__, "t0_ns": spec.t0_ns + round(p * size * 1e9 / spec.fps)})
        dirs.append(write_bag(path.with_name(f"{path.name}-part{p}"), frames[p * size : (p + 1) * size], part_spec))
    metas = [yaml.safe_load((d / "metadata.yaml").read_text())["rosbag2_bagfile_information"] for d in dirs]
    path.mkdir()
    info = {**metas[0], "relative_file_paths": [], "files": []}
    for p, (d, meta) in enumerate(zip(dirs, metas)):
        for rel, entry in zip(meta["relative_file_paths"], meta["files"]):
            name = f"{path.name}_{p}" + rel.removeprefix(d.name)  # bag.part1.mcap.zstd -> bag_1.mcap.zstd
            shutil.move(d / rel, path / name)
            info["relative_file_paths"].append(name)
            info["files"].append({**entry, "path": name})
        shutil.rmtree(d)
    info["message_count"] = sum(m["message_count"] for m in metas)
    end = max(m["starting_time"]["nanoseconds_since_epoch"] + m["duration"]["nanoseconds"] for m in metas)
    info["duration"]["nanoseconds"] = end - info["starting_time"]["nanoseconds_since_epoch"]
    for k, topic in enumerate(info["topics_with_message_count"]):
        topic["message_count"] = sum(m["topics_with_message_count"][k]["message_count"] for m in metas)
    (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))
    return path
