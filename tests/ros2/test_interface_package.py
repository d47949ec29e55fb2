"""ros2/perception_msgs: the .msg files a colcon build generates types from are the types the bridge
writes (perception/ros2/interfaces.py): parsed with rosbags' .msg parser (ROS's own grammar), the same
fields in the same order with the same types, and the same CDR bytes from both."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rosbags.typesys import get_types_from_msg

from perception.ros2 import interfaces as ifc
from perception.ros2.bag import typestore
from tests.support import REPO

PKG = REPO / "ros2" / "perception_msgs"


def store_with_package():
    store = typestore()
    types = {}
    for name in ("Caption", "Event", "WatchCrossing"):
        types.update(get_types_from_msg((PKG / "msg" / f"{name}.msg").read_text(), f"perception_msgs/msg/{name}"))
    store.register(types)
    return store


def test_the_package_declares_its_messages_and_dependencies():
    root = ET.parse(PKG / "package.xml").getroot()
    assert root.findtext("name") == "perception_msgs"
    assert {d.text for d in root.findall("depend")} == {"builtin_interfaces", "std_msgs"}
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    cmake = (PKG / "CMakeLists.txt").read_text()
    for name in ("Caption", "Event", "WatchCrossing"):
        assert f'"msg/{name}.msg"' in cmake


def test_the_msg_files_and_the_bridge_types_serialize_alike():
    store = store_with_package()
    header = ifc.Header(ifc.Time(12, 34), "front")
    samples = {
        "Caption": ifc.Caption(header, "front", 7, "a red circle grows", ifc.Time(10, 5), 1.5, 3.25, 42.0),
        "Event": ifc.Event(header, "front", 7, ifc.Time(10, 5), 1.5, 3.25, ["a", "bb"], [0.5, 0.25]),
        "WatchCrossing": ifc.WatchCrossing(header, "front", "a person", "config:a person", True, 7, 3.25),
    }
    for name, sample in samples.items():
        raw = sample.serialize()
        msg = store.deserialize_cdr(raw, f"perception_msgs/msg/{name}")
        assert msg.header.frame_id == "front" and msg.camera == "front", name
        assert store.serialize_cdr(msg, f"perception_msgs/msg/{name}") == raw, name
    caption = store.deserialize_cdr(samples["Caption"].serialize(), "perception_msgs/msg/Caption")
    assert (caption.text, caption.start.nanosec, caption.latency_ms) == ("a red circle grows", 5, 42.0)
