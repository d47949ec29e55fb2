"""ROS 2 message types as Cyclone DDS IDL structs, named as rmw_cyclonedds names them
(`sensor_msgs::msg::dds_::Image_`), field for field in the order of their .msg definitions, so their
XCDR1 samples are the bytes a ROS 2 node sends and receives (and rosbags' CDR serde reads).

Types we *read* from a graph (images, poses) hand their samples over as raw CDR bytes (`RawSample`):
they are decoded by the same rosbags deserializer as bags, in our code, so a malformed sample is a
counted reject rather than an exception inside the DDS binding. Types we *write* (perception_msgs,
std_msgs/String) serialize with Cyclone's own code. ros2/perception_msgs/msg/*.msg define the same
perception types for ROS 2 consumers that build them with colcon.
"""

# no `from __future__ import annotations`: the IDL layer reads the field types as objects
from dataclasses import dataclass

import cyclonedds.idl.annotations as annotate
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, float32, float64, int32, sequence, uint8, uint32, uint64


class RawSample(bytes):
    """A sample as its serialized CDR (encapsulation header included); DataReader sets `sample_info`."""


@classmethod
def _raw(cls, data, has_header: bool = True, use_version_2: bool | None = None) -> RawSample:
    return RawSample(data)


# -- builtin_interfaces, std_msgs ---------------------------------------------------------------------------


@dataclass
@annotate.final
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32

    @classmethod
    def of_ns(cls, ns: int) -> "Time":
        return cls(ns // 1_000_000_000, ns % 1_000_000_000)


@dataclass
@annotate.final
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str


@dataclass
@annotate.final
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str


# -- sensor_msgs (read) -------------------------------------------------------------------------------------


@dataclass
@annotate.final
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: uint32
    width: uint32
    encoding: str
    is_bigendian: uint8
    step: uint32
    data: sequence[uint8]
    deserialize = _raw


@dataclass
@annotate.final
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header
    format: str
    data: sequence[uint8]
    deserialize = _raw


# -- geometry_msgs, nav_msgs, tf2_msgs (read) -----------------------------------------------------------------


@dataclass
@annotate.final
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: float64
    y: float64
    z: float64


@dataclass
@annotate.final
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64
    y: float64
    z: float64


@dataclass
@annotate.final
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64
    y: float64
    z: float64
    w: float64


@dataclass
@annotate.final
class PoseMsg(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point
    orientation: Quaternion


@dataclass
@annotate.final
class PoseWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovariance_"):
    pose: PoseMsg
    covariance: array[float64, 36]


@dataclass
@annotate.final
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3
    angular: Vector3


@dataclass
@annotate.final
class TwistWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::TwistWithCovariance_"):
    twist: Twist
    covariance: array[float64, 36]


@dataclass
@annotate.final
class Odometry(IdlStruct, typename="nav_msgs::msg::dds_::Odometry_"):
    header: Header
    child_frame_id: str
    pose: PoseWithCovariance
    twist: TwistWithCovariance
    deserialize = _raw


@dataclass
@annotate.final
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    header: Header
    pose: PoseMsg
    deserialize = _raw


@dataclass
@annotate.final
class PoseWithCovarianceStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovarianceStamped_"):
    header: Header
    pose: PoseWithCovariance
    deserialize = _raw


@dataclass
@annotate.final
class Transform(IdlStruct, typename="geometry_msgs::msg::dds_::Transform_"):
    translation: Vector3
    rotation: Quaternion


@dataclass
@annotate.final
class TransformStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TransformStamped_"):
    header: Header
    child_frame_id: str
    transform: Transform


@dataclass
@annotate.final
class TFMessage(IdlStruct, typename="tf2_msgs::msg::dds_::TFMessage_"):
    transforms: sequence[TransformStamped]
    deserialize = _raw


# -- perception_msgs (written; ros2/perception_msgs/msg/*.msg) --------------------------------------------------


@dataclass
@annotate.final
class Caption(IdlStruct, typename="perception_msgs::msg::dds_::Caption_"):
    header: Header  # stamp: capture time of the segment's last frame; frame_id: the camera
    camera: str
    segment_id: uint64
    text: str
    start: Time  # capture time of the segment's first frame
    start_s: float64  # stream time of the segment, seconds
    end_s: float64
    latency_ms: float64  # frame capture -> caption published


@dataclass
@annotate.final
class Event(IdlStruct, typename="perception_msgs::msg::dds_::Event_"):
    header: Header  # stamp: capture time of the segment's last frame
    camera: str
    segment_id: uint64
    start: Time
    start_s: float64
    end_s: float64
    labels: sequence[str]  # top open-vocabulary labels of the segment, best first
    scores: sequence[float32]  # their cosine similarities


@dataclass
@annotate.final
class WatchCrossing(IdlStruct, typename="perception_msgs::msg::dds_::WatchCrossing_"):
    header: Header  # stamp: capture time of the window that crossed
    camera: str
    watch: str  # the watched phrase
    watch_id: str
    active: bool  # true: rose to `enter`; false: fell to `leave`
    segment_id: uint64
    stream_s: float64


# ROS type name -> the struct a reader subscribes with
READ_TYPES = {
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CompressedImage": CompressedImage,
    "nav_msgs/msg/Odometry": Odometry,
    "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/PoseWithCovarianceStamped": PoseWithCovarianceStamped,
    "tf2_msgs/msg/TFMessage": TFMessage,
}
