"""A plain Cyclone DDS participant speaking ROS 2's names and QoS, as a robot's nodes would: what the live
tests (and `perception bench ros2`) publish camera frames with and read our topics back with. The DDS
traffic stays on this host: CYCLONEDDS_URI points at configs/cyclonedds-loopback.xml, and the domain is
one of our own so parallel runs do not hear each other."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = f"file://{REPO / 'configs' / 'cyclonedds-loopback.xml'}"


def dds_env() -> dict[str, str]:
    """CYCLONEDDS_URI (loopback only) and a ROS_DOMAIN_ID of this run's own."""
    return {"CYCLONEDDS_URI": LOOPBACK, "ROS_DOMAIN_ID": str(random.Random(os.getpid()).randint(100, 230))}


class Peer:
    """A participant of its own (not the process's shared one): another node on the graph."""

    def __init__(self, domain: int) -> None:
        from cyclonedds.domain import DomainParticipant

        self.dp = DomainParticipant(domain)

    def image_writer(self, topic: str = "/camera/image_raw"):
        from perception.ros2 import dds
        from perception.ros2.interfaces import Image

        return dds.writer(self.dp, topic, Image, dds.sensor_qos())

    def reader(self, topic: str, idl_type):
        from perception.ros2 import dds

        return dds.reader(self.dp, topic, idl_type, dds.reliable_qos())


def image(rgb: np.ndarray, stamp_ns: int | None = None, frame_id: str = "camera"):
    from perception.ros2.interfaces import Header, Image, Time

    h, w = rgb.shape[:2]
    stamp = Time.of_ns(time.time_ns() if stamp_ns is None else stamp_ns)
    return Image(Header(stamp, frame_id), h, w, "rgb8", 0, w * 3, rgb.tobytes())


def malformed(k: int):
    """An Image whose contents lie, as a broken or hostile driver sends them: sizes its data does not have
    (60000 x 60000 in 192 bytes), a row step shorter than a row, an unknown encoding, odd-width 4:2:2.
    (A sample whose CDR itself is cut short never leaves the sender: Cyclone refuses to write it with
    DDS_RETCODE_BAD_PARAMETER; the bag tests feed cut CDR to the same decoder.)"""
    from perception.ros2.interfaces import Header, Image, Time

    data = bytes(192)
    header = Header(Time(0, 0), "camera")
    variants = [
        Image(header, 60000, 60000, "rgb8", 0, 180000, data),
        Image(header, 8, 8, "rgb8", 0, 4, data),
        Image(header, 8, 8, "bayer_weird99", 0, 24, data),
        Image(header, 8, 7, "yuv422", 0, 14, data),
    ]
    return variants[k % len(variants)]


def wait_matched(writer, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not writer.get_matched_subscriptions():
        if time.monotonic() > deadline:
            raise TimeoutError("no ROS 2 subscriber matched the writer")
        time.sleep(0.05)
