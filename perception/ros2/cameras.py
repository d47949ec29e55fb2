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
        except BagError as exc:  # a file does not mend itself: not retried
            raise SourceUnavailableError(str(exc), permanent=True) from exc
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
            raise SourceUnavailableError(str(exc), permanent=True) from exc
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


# -- ros2 (live) ------------------------------------------------------------------------------------------


class Ros2CameraConfig(CameraConfig):
    """A live ROS 2 image topic over DDS (perception/ros2/dds.py), subscribed with the sensor-data QoS
    (best effort, keep last 5), so the newest frames win and a slow consumer never holds the camera up.
    Frames are paced by their arrival (`realtime` has nothing to pace); the topic's type is CompressedImage
    when `compressed` (default: when the topic ends in /compressed), else Image."""

    type: Literal["ros2"] = "ros2"
    topic: str = Field(pattern=names.TOPIC_PATTERN)
    compressed: bool | None = None
    poses: list[PoseInputConfig] = Field(default_factory=list, max_length=8)
    domain_id: int | None = Field(None, ge=0, le=232)  # None: ROS_DOMAIN_ID, else 0
    # subscribe reliable (keep last 5): lost fragments of a large raw frame are resent, when the publisher
    # is reliable too (rclcpp's default QoS); false: best effort, which matches every publisher
    reliable: bool = False
    # no frame for this long: the topic is gone; the capture node reconnects with backoff
    stall_s: float = Field(10.0, gt=0)
    realtime: bool = False

    @model_validator(mode="after")
    def _pose_types(self) -> Ros2CameraConfig:
        self.realtime = False  # a live topic paces itself (a camera switched from a file keeps realtime: true)
        untyped = [p.topic for p in self.poses if p.msgtype is None]
        if untyped:
            raise ValueError(f"live pose topics need a type (odometry, pose, pose_cov or tf): {untyped}")
        return self

    @property
    def msgtype(self) -> str:
        compressed = self.compressed if self.compressed is not None else self.topic.endswith("/compressed")
        return names.COMPRESSED_IMAGE if compressed else names.IMAGE

    def describe(self) -> str:
        return f"ros2 {self.topic} ({self.msgtype})"


PENDING_FRAMES = 4  # frames received but not yet read beyond this: the oldest are dropped (and counted)
TAKE_BATCH = 32


@camera_kind(Ros2CameraConfig)
class Ros2Source(Source):
    """Frames of a live ROS 2 topic. A sample is decoded only when its frame is wanted (the encoder's
    frames; the others only count), by rosbags' CDR deserializer: a malformed one is a counted reject."""

    config: Ros2CameraConfig

    def __init__(self, config: Ros2CameraConfig) -> None:
        super().__init__(config)
        self._reader = None
        self._waitset = None
        self._pose_readers: list[tuple[Any, str, PoseTopic]] = []
        self._pending: deque[bytes] = deque()
        self._poses = PoseQueue(self.counts)
        self._t0: float | None = None
        self._store = None

    def connect(self) -> None:
        import time

        from cyclonedds.core import ReadCondition, SampleState, WaitSet

        from perception.ros2 import dds
        from perception.ros2.bag import typestore
        from perception.ros2.interfaces import READ_TYPES

        c = self.config
        try:
            dp = dds.participant(c.domain_id)
            qos = dds.sensor_qos(reliable=c.reliable)
            self._reader = dds.reader(dp, c.topic, READ_TYPES[c.msgtype], qos)
            self._pose_readers = [
                (dds.reader(dp, p.topic, READ_TYPES[p.msgtype], dds.reliable_qos()), p.msgtype, p.want())
                for p in c.poses
            ]
            self._waitset = WaitSet(dp)
            self._waitset.attach(ReadCondition(self._reader, SampleState.NotRead))
        except Exception as exc:  # the binding raises DDSException and others for a bad domain or config
            raise SourceUnavailableError(f"cannot join ROS 2 domain for {c.topic}: {exc}") from exc
        self._store = typestore()
        self._pending.clear()
        self._index, self._t0 = 0, None
        self._last = time.monotonic()
        self.connected = True

    def _take(self, timeout_s: float) -> None:
        from cyclonedds.util import duration

        if not self._pending:
            self._waitset.wait(duration(milliseconds=round(timeout_s * 1000)))
        for sample in self._reader.take(N=TAKE_BATCH):
            if len(self._pending) == PENDING_FRAMES:
                self._pending.popleft()
                self.counts["dropped"] += 1
            self._pending.append(sample)
        for reader, msgtype, want in self._pose_readers:
            for raw in reader.take(N=TAKE_BATCH):
                try:
                    pose = to_pose(self._store.deserialize_cdr(raw, msgtype), msgtype, self.config.name, want)
                except Exception:  # truncated or garbled CDR, a non-finite pose: counted, never raised
                    self.counts["rejected"] += 1
                    continue
                if pose is not None:
                    self._poses.add(pose)

    def read(self, want: Want = EVERYTHING) -> SourceFrame | None:
        """The next frame that arrives; SourceUnavailableError when none has for `stall_s`."""
        import time

        from perception.ros2.images import to_frames

        if self._reader is None:
            raise SourceUnavailableError(f"source {self.config.topic}: read before connect")
        while True:
            self._take(0.2)
            now = time.monotonic()
            if not self._pending:
                if now - self._last > self.config.stall_s:
                    raise SourceUnavailableError(f"no frames on {self.config.topic} for {self.config.stall_s} s")
                continue
            self._last = now
            raw = self._pending.popleft()
            self._t0 = now if self._t0 is None else self._t0
            image = full = None
            if want.pixels:
                msgtype = self.config.msgtype
                try:
                    msg = self._store.deserialize_cdr(raw, msgtype)
                    image, full = to_frames(msg, msgtype == names.COMPRESSED_IMAGE, want)
                except Exception:  # malformed CDR, sizes that disagree, an undecodable JPEG
                    self.counts["rejected"] += 1
                    continue
            i = self._index
            self._index += 1
            return SourceFrame(image, i, now - self._t0, full)

    def take_poses(self) -> list[Pose]:
        return self._poses.take()

    def close(self) -> None:
        self._reader = self._waitset = None
        self._pose_readers = []
        self._pending.clear()
        super().close()
