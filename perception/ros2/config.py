"""`pipeline.ros2`: what the ROS 2 output node (perception/nodes/ros2_out.py) publishes, and where.

    pipeline:
      ros2: {namespace: /perception}     # -> /perception/<cam>/captions, /events, /watches, *_json

Topic leaves may be renamed, or set to "" to publish nothing there. Setting the section (or `perception
up --ros2`) adds the `ros2` node to `pipeline.nodes`."""

from __future__ import annotations

from pydantic import Field

from perception.nodes.sections import Section

_LEAF = r"^([A-Za-z_][A-Za-z0-9_/]*)?$"


class Ros2OutConfig(Section):
    namespace: str = Field("/perception", pattern=r"^(/[A-Za-z_][A-Za-z0-9_]*)*$")  # "" or /a/b
    captions: str = Field("captions", pattern=_LEAF)  # perception_msgs/msg/Caption
    events: str = Field("events", pattern=_LEAF)  # perception_msgs/msg/Event (segments)
    watches: str = Field("watches", pattern=_LEAF)  # perception_msgs/msg/WatchCrossing
    captions_json: str = Field("captions_json", pattern=_LEAF)  # std_msgs/msg/String, JSON as `perception up --json`
    events_json: str = Field("events_json", pattern=_LEAF)  # std_msgs/msg/String: segments and watch crossings
    domain_id: int | None = Field(None, ge=0, le=232)  # None: ROS_DOMAIN_ID, else 0
    # cameras with writers at once: names come from publishers on our bus, so the least recently heard
    # beyond this loses its writers (and is counted)
    max_cameras: int = Field(16, ge=1, le=256)

    def topic(self, cam: str, leaf: str) -> str:
        return f"{self.namespace}/{cam}/{leaf}"
