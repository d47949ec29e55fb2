"""ROS 2 output node: captions, events and watch crossings of every camera, out to a ROS 2 graph over DDS.

    captions/<cam> -> /perception/<cam>/captions       perception_msgs/msg/Caption   (typed)
                   -> /perception/<cam>/captions_json  std_msgs/msg/String           (JSON)
    events/<cam>   -> /perception/<cam>/events         perception_msgs/msg/Event     (segments)
                   -> /perception/<cam>/watches        perception_msgs/msg/WatchCrossing
                   -> /perception/<cam>/events_json    std_msgs/msg/String           (both, JSON)

Writers are reliable, keep last 10 (what ROS 2 subscribers ask by default). Header stamps are the
capture times of the newest frame a message depends on, frame ids the camera name. A writer per camera
and topic is made when the camera is first heard; at most `pipeline.ros2.max_cameras` cameras keep
theirs (camera names come from publishers on our bus). `perception up --ros2` runs it with the
pipeline; `perception ros2` alone beside a running one. Names and QoS: perception/ros2/dds.py.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from bus.component import on
from perception.messages import Caption, Event
from perception.nodes.runtime import Node
from perception.ros2.config import Ros2OutConfig


def caption_json(msg: Caption) -> str:
    return json.dumps({"topic": f"captions/{msg.cam}", **msg.model_dump(mode="json")})


def event_json(msg: Event) -> str:
    return json.dumps({"topic": f"events/{msg.cam}", **msg.model_dump(mode="json", exclude={"embedding"})})


class Ros2OutNode(Node):
    name = "ros2"

    async def setup(self) -> None:
        from perception.ros2 import dds

        self.out: Ros2OutConfig = self.config.pipeline.ros2 or Ros2OutConfig()
        self.dp = dds.participant(self.out.domain_id)
        self.writers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.log.info("joined ROS 2 domain", domain=dds.domain_id(self.out.domain_id), namespace=self.out.namespace)

    def _writers(self, cam: str) -> dict[str, Any]:
        from perception.ros2 import dds
        from perception.ros2 import interfaces as ifc

        if cam in self.writers:
            self.writers.move_to_end(cam)
            return self.writers[cam]
        if len(self.writers) >= self.out.max_cameras:
            self.writers.popitem(last=False)
            self.counters["cameras_evicted"] += 1
        kinds = {
            "captions": ifc.Caption,
            "events": ifc.Event,
            "watches": ifc.WatchCrossing,
            "captions_json": ifc.String,
            "events_json": ifc.String,
        }
        qos = dds.reliable_qos()
        made = {
            kind: dds.writer(self.dp, self.out.topic(cam, leaf), idl, qos)
            for kind, idl in kinds.items()
            if (leaf := getattr(self.out, kind))
        }
        self.writers[cam] = made
        return made

    def _write(self, cam: str, kind: str, sample: Any) -> None:
        writer = self._writers(cam).get(kind)
        if writer is not None:
            writer.write(sample)
            self.counters[f"sent.{kind}"] += 1

    @on("captions/{cam}", Caption)
    def on_caption(self, msg: Caption) -> None:
        from perception.ros2 import interfaces as ifc

        header = ifc.Header(ifc.Time.of_ns(msg.end_ns), msg.cam)
        self._write(
            msg.cam,
            "captions",
            ifc.Caption(
                header,
                msg.cam,
                msg.segment_id,
                msg.text,
                ifc.Time.of_ns(msg.start_ns),
                msg.start_s,
                msg.end_s,
                msg.latency_ms,
            ),
        )
        self._write(msg.cam, "captions_json", ifc.String(caption_json(msg)))

    @on("events/{cam}", Event)
    def on_event(self, msg: Event) -> None:
        from perception.ros2 import interfaces as ifc

        header = ifc.Header(ifc.Time.of_ns(msg.end_ns), msg.cam)
        if msg.kind == "segment":
            sample = ifc.Event(
                header,
                msg.cam,
                msg.segment_id,
                ifc.Time.of_ns(msg.start_ns),
                msg.start_s,
                msg.end_s,
                [s.label for s in msg.labels],
                [float(s.score) for s in msg.labels],
            )
            self._write(msg.cam, "events", sample)
        else:
            sample = ifc.WatchCrossing(
                header, msg.cam, msg.watch or "", msg.watch_id or "", bool(msg.active), msg.segment_id, msg.end_s
            )
            self._write(msg.cam, "watches", sample)
        self._write(msg.cam, "events_json", ifc.String(event_json(msg)))

    def extra_stats(self) -> dict[str, float]:
        return {"ros2_cameras": float(len(self.writers))}


NODE = Ros2OutNode
