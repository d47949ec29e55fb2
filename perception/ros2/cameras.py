"""The ROS 2 camera kinds of `pipeline.cameras` (registered in perception/nodes/sources.py's table):

    - {name: cam0, type: rosbag, path: run.mcap, topic: /camera/image_raw,
       poses: [{topic: /odom}, {topic: /tf, parent: map, child: base_link}]}
    - {name: cam0, type: ros2, topic: /camera/image_raw, poses: [{topic: /odom}]}

`rosbag` plays a rosbag2 recording's Image or CompressedImage topic, paced by the images' header stamps
(`realtime: false`: as fast as the pipeline takes them); `ros2` subscribes to a live ROS 2 graph over
DDS (perception/ros2/dds.py). Both put the pose topics' messages on pose/<cam> (perception/ros2/poses.py).
A message that does not decode is a counted reject (`<cam>.rejected`), never the end of the source.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from perception.messages import Pose
from perception.nodes.feed import EVERYTHING, Want
from perception.nodes.sections import Section
from perception.nodes.sources import (
    CameraConfig,
    Source,
    SourceFrame,
    SourceUnavailableError,
    camera_kind,
)
from perception.ros2 import names
from perception.ros2.poses import PoseTopic, stamp_ns, to_pose

MAX_PENDING_POSES = 256  # poses read between two frames beyond this: the oldest are dropped (and counted)


class PoseInputConfig(Section):
    """A pose topic read beside the images: nav_msgs/Odometry, geometry_msgs/PoseStamped or
    PoseWithCovarianceStamped (type from the bag or the `type` key live), or tf2_msgs/TFMessage with the
    edge `parent` -> `child` to follow (e.g. map -> base_link)."""

    topic: str = Field(pattern=names.TOPIC_PATTERN)
    parent: str | None = None  # TF only: the fixed frame
    child: str | None = None  # TF only: the moving frame
    type: Literal["odometry", "pose", "pose_cov", "tf"] | None = None  # live: the topic's type; bags: from the bag

    @model_validator(mode="after")
    def _tf_pair(self) -> PoseInputConfig:
        if (self.parent is None) != (self.child is None):
            raise ValueError("a TF pose input needs both parent and child frames")
        if self.type == "tf" and self.parent is None:
            raise ValueError("type tf needs parent and child frames")
        return self

    @property
    def msgtype(self) -> str | None:
        if self.type is None:
            return names.TF if self.parent is not None else None
        return {"odometry": names.ODOMETRY, "pose": names.POSE_STAMPED, "pose_cov": names.POSE_WITH_COVARIANCE}.get(
            self.type, names.TF
        )

    def want(self) -> PoseTopic:
        return PoseTopic(self.topic, self.parent, self.child)


class PoseQueue:
    """Poses read since the capture node last asked, bounded."""

    def __init__(self, counts: Counter[str]) -> None:
        self._poses: deque[Pose] = deque(maxlen=MAX_PENDING_POSES)
        self.counts = counts

    def add(self, pose: Pose) -> None:
        if len(self._poses) == self._poses.maxlen:
            self.counts["poses_dropped"] += 1
        self._poses.append(pose)

    def take(self) -> list[Pose]:
        out = list(self._poses)
        self._poses.clear()
        return out


# -- rosbag -----------------------------------------------------------------------------------------------


class RosbagCameraConfig(CameraConfig):
    """A rosbag2 recording's image topic (Image or CompressedImage), a .mcap file or the bag directory.
    Paced by the images' header stamps (`pace: log`: by the bag's log times) unless `realtime: false`."""

    type: Literal["rosbag"] = "rosbag"
    path: str = Field(min_length=1)
    topic: str | None = Field(None, pattern=names.TOPIC_PATTERN)  # None: the bag's only image topic
    poses: list[PoseInputConfig] = Field(default_factory=list, max_length=8)
    pace: Literal["header", "log"] = "header"

    rate_from_source: ClassVar[bool] = True

    def describe(self) -> str:
        return f"rosbag {self.path}" + (f" {self.topic}" if self.topic else "")

    def preflight(self) -> dict[str, str]:
        """The bag opens, and has the image topic and the pose topics with types we read."""
        from perception.ros2.bag import Bag, BagError

        try:
            with Bag(self.path) as bag:
                bag.require(self.topic, names.IMAGE_TYPES, "image")
                for p in self.poses:
                    bag.require(p.topic, names.POSE_TYPES, "pose")
        except BagError as exc:
            return {"topic" if "topic" in str(exc) else "path": str(exc)}
        return {}


@camera_kind(RosbagCameraConfig)
class RosbagSource(Source):
    """Images (and poses) of a rosbag2 bag in log-time order; stream time from the images' header stamps."""

    config: RosbagCameraConfig

    def __init__(self, config: RosbagCameraConfig) -> None:
        super().__init__(config)
        self._bag = None
        self._messages = None
        self._poses = PoseQueue(self.counts)
        self._fps: float | None = None
        self._t0_ns: int | None = None
        self.image_topic: str | None = None
        self.last_stamp_ns = 0  # the stamp (header, or log time) of the image `read` returned last

    @property
    def fps(self) -> float:
        return self._fps or self.config.fps

    def connect(self) -> None:
        from perception.ros2.bag import Bag, BagError

        try:
            bag = Bag(self.config.path)
            try:
                image = bag.require(self.config.topic, names.IMAGE_TYPES, "image")
                pose_topics = {p.topic: bag.require(p.topic, names.POSE_TYPES, "pose") for p in self.config.poses}
            except BagError:
                bag.close()
                raise
        except BagError as exc:
            raise SourceUnavailableError(str(exc)) from exc
        duration = bag.duration_s()
        if image.count > 1 and duration > 0:
            self._fps = (image.count - 1) / duration  # the bag's rate (the bag may hold other topics longer)
        self._bag, self.image_topic = bag, image.name
        self._pose_wants = {p.topic: p.want() for p in self.config.poses}
        self._messages = bag.messages([image.name, *pose_topics])
        self._index, self._t0_ns = 0, None
        self.connected = True

    def read(self, want: Want = EVERYTHING) -> SourceFrame | None:
        from perception.ros2.bag import BagError
        from perception.ros2.images import to_frames

        if self._messages is None:
            raise SourceUnavailableError(f"source {self.config.name}: read before connect")
        try:
            for topic, msgtype, log_ns, msg in self._messages:
                if isinstance(msg, ValueError):
                    self.counts["rejected"] += 1
                    continue
                if topic != self.image_topic:
                    self._pose(topic, msgtype, msg)
                    continue
                try:
                    t_ns = stamp_ns(msg.header.stamp) if self.config.pace == "header" else log_ns
                    t_ns = t_ns or log_ns  # a camera driver that leaves stamps at zero
                    self._t0_ns = t_ns if self._t0_ns is None else self._t0_ns
                    image, full = to_frames(msg, msgtype == names.COMPRESSED_IMAGE, want)
                except ValueError:
                    self.counts["rejected"] += 1
                    continue
                i = self._index
                self._index += 1
                self.last_stamp_ns = t_ns
                return SourceFrame(image, i, max(0.0, (t_ns - self._t0_ns) / 1e9), full)
        except BagError as exc:
            raise SourceUnavailableError(str(exc)) from exc
        return None

    def _pose(self, topic: str, msgtype: str, msg: Any) -> None:
        try:
            pose = to_pose(msg, msgtype, self.config.name, self._pose_wants[topic])
        except (ValueError, AttributeError):
            self.counts["rejected"] += 1
            return
        if pose is not None:
            self._poses.add(pose)

    def take_poses(self) -> list[Pose]:
        return self._poses.take()

    def close(self) -> None:
        if self._bag is not None:
            self._bag.close()
        self._bag = self._messages = None
        super().close()
