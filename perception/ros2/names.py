"""ROS 2's names for things: message types as bags and the graph spell them, and how rmw_cyclonedds maps a
ROS 2 topic and type onto DDS (topic `rt/<name>`, type `pkg::msg::dds_::Name_`)."""

from __future__ import annotations

import re

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
ODOMETRY = "nav_msgs/msg/Odometry"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
POSE_WITH_COVARIANCE = "geometry_msgs/msg/PoseWithCovarianceStamped"
TF = "tf2_msgs/msg/TFMessage"
POSE_TYPES = (ODOMETRY, POSE_STAMPED, POSE_WITH_COVARIANCE, TF)

_DDS_TYPE = re.compile(r"^(\w+)::(\w+)::dds_::(\w+)_$")
_SHORT = re.compile(r"^(\w+)/(\w+)$")


def canonical_type(name: str) -> str:
    """`sensor_msgs/msg/Image` from any spelling a bag or a peer uses: ROS 2's own, ROS 1's and some
    converters' `sensor_msgs/Image`, or the DDS type name `sensor_msgs::msg::dds_::Image_`."""
    if m := _DDS_TYPE.match(name):
        return f"{m[1]}/{m[2]}/{m[3]}"
    if m := _SHORT.match(name):
        return f"{m[1]}/msg/{m[2]}"
    return name


def dds_type(msgtype: str) -> str:
    """`sensor_msgs/msg/Image` -> `sensor_msgs::msg::dds_::Image_` (what rmw_cyclonedds registers)."""
    pkg, kind, name = canonical_type(msgtype).split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def dds_topic(topic: str) -> str:
    """ROS 2 topic `/camera/image_raw` -> DDS topic `rt/camera/image_raw` (rmw's prefix for topics)."""
    if not topic.startswith("/"):
        topic = "/" + topic
    return "rt" + topic


TOPIC_PATTERN = r"^/?[A-Za-z_~{][A-Za-z0-9_/{}~]*$"  # a ROS 2 topic name (absolute or relative)
