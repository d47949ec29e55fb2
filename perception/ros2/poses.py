"""Odometry, PoseStamped, PoseWithCovarianceStamped and TF messages (as rosbags decodes them, or our DDS
types) as `Pose` on pose/<cam>: where the robot was, in which fixed frame, at which stamp."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from perception.messages import Pose
from perception.ros2 import names


@dataclass(frozen=True)
class PoseTopic:
    """A pose input: a topic, and for TF the edge (parent -> child) to follow. Only a direct edge of the
    tree is read (map -> base_link as one transform), not a chain composed from several."""

    topic: str
    parent: str | None = None
    child: str | None = None


def yaw(qx: float, qy: float, qz: float, qw: float) -> float:
    """Rotation about +z (radians) of a unit quaternion: what planar navigation and queries use."""
    return math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _frame(name: str) -> str:
    return name.lstrip("/")


def to_pose(msg: Any, msgtype: str, cam: str, want: PoseTopic) -> Pose | None:
    """The `Pose` in `msg` (of ROS type `msgtype`), or None when it holds none for `want` (a TF message
    without the configured edge). Raises ValueError on non-finite numbers."""
    msgtype = names.canonical_type(msgtype)
    child = ""
    if msgtype == names.ODOMETRY:
        header, pose, child = msg.header, msg.pose.pose, msg.child_frame_id
        position, q = pose.position, pose.orientation
        source = f"odometry:{want.topic}"
    elif msgtype == names.POSE_STAMPED:
        header, position, q = msg.header, msg.pose.position, msg.pose.orientation
        source = f"pose:{want.topic}"
    elif msgtype == names.POSE_WITH_COVARIANCE:
        header, position, q = msg.header, msg.pose.pose.position, msg.pose.pose.orientation
        source = f"pose:{want.topic}"
    elif msgtype == names.TF:
        for t in msg.transforms:
            if _frame(t.header.frame_id) == _frame(want.parent or "") and _frame(t.child_frame_id) == _frame(
                want.child or ""
            ):
                header, child = t.header, t.child_frame_id
                position, q = t.transform.translation, t.transform.rotation
                source = f"tf:{_frame(want.parent or '')}->{_frame(want.child or '')}"
                break
        else:
            return None
    else:
        raise ValueError(f"{msgtype} is not a pose type; pose types: {', '.join(names.POSE_TYPES)}")
    values = (position.x, position.y, position.z, q.x, q.y, q.z, q.w)
    if not all(math.isfinite(v) for v in values):
        raise ValueError("pose with a non-finite number")
    x, y, z, qx, qy, qz, qw = (float(v) for v in values)
    return Pose(
        cam=cam,
        frame_id=_frame(header.frame_id),
        child_frame_id=_frame(child),
        stamp_ns=stamp_ns(header.stamp),
        x=x,
        y=y,
        z=z,
        yaw=yaw(qx, qy, qz, qw),
        qx=qx,
        qy=qy,
        qz=qz,
        qw=qw,
        source=source,
    )
