"""A Cyclone DDS participant on a ROS 2 graph: ROS 2's topic and type names (perception/ros2/names.py),
its QoS profiles, its domain (ROS_DOMAIN_ID). rmw_cyclonedds maps ROS 2 onto plain DDS with no extra
protocol, so a plain DDS reader or writer with these names and QoS is a ROS 2 subscriber or publisher.

Where the traffic goes is Cyclone's own configuration (CYCLONEDDS_URI; configs/cyclonedds-loopback.xml
keeps it on this host, as tests and benchmarks do). One participant per process and domain, as a ROS 2
process has one per context.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from perception.ros2 import names

_participants: dict[int, Any] = {}
_lock = threading.Lock()

SENSOR_DEPTH = 5  # rclcpp's SensorDataQoS: best effort, keep last 5, volatile
RELIABLE_DEPTH = 10  # rclcpp's default QoS: reliable, keep last 10, volatile


def domain_id(configured: int | None = None) -> int:
    """`configured`, else ROS_DOMAIN_ID, else 0 (as ROS 2 does); ValueError when it is not 0..232."""
    value = configured if configured is not None else int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    if not 0 <= value <= 232:
        raise ValueError(f"ROS domain id {value} is outside 0..232")
    return value


def participant(domain: int | None = None):
    """This process's participant on `domain` (created on first use)."""
    from cyclonedds.domain import DomainParticipant

    d = domain_id(domain)
    with _lock:
        if d not in _participants:
            _participants[d] = DomainParticipant(d)
        return _participants[d]


def sensor_qos(reliable: bool = False):
    """Keep last 5, volatile; best effort (what SensorDataQoS asks, and what matches any publisher), or
    reliable for a subscriber that wants lost fragments resent."""
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.util import duration

    kind = Policy.Reliability.Reliable(duration(milliseconds=100)) if reliable else Policy.Reliability.BestEffort
    return Qos(kind, Policy.History.KeepLast(SENSOR_DEPTH), Policy.Durability.Volatile)


def reliable_qos():
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.util import duration

    return Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.History.KeepLast(RELIABLE_DEPTH),
        Policy.Durability.Volatile,
    )


def topic(dp, ros_topic: str, idl_type):
    """The DDS topic under which ROS 2 knows `ros_topic` (`/camera/image_raw` -> `rt/camera/image_raw`)."""
    from cyclonedds.topic import Topic

    return Topic(dp, names.dds_topic(ros_topic), idl_type)


def reader(dp, ros_topic: str, idl_type, qos):
    from cyclonedds.sub import DataReader

    return DataReader(dp, topic(dp, ros_topic, idl_type), qos=qos)


def writer(dp, ros_topic: str, idl_type, qos):
    from cyclonedds.pub import DataWriter

    return DataWriter(dp, topic(dp, ros_topic, idl_type), qos=qos)
