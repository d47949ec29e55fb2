"""A robot's rosbag2 recording as the inputs of `perception test` (perception/sessions/offline.py): its
image topic becomes frames/<cam> exactly as the capture node would publish it (the frames the encoder's
windows use, scaled and centre-cropped to the model's input size), stamped with the images' header
stamps, so two runs over the same bag are the same run, on any machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from perception.config import AppConfig
from perception.messages import Frame
from perception.nodes.feed import Feed, centre_crop
from perception.nodes.models import ModelUnavailableError, model_config
from perception.ros2 import names
from perception.ros2.bag import Bag
from perception.ros2.cameras import RosbagCameraConfig, RosbagSource


def bag_camera(config: AppConfig, bag: str | Path, topic: str | None) -> RosbagCameraConfig:
    """The config's first camera reading `bag` (its `topic`; None: the camera's own topic when it is a
    rosbag camera, else the bag's only image topic), as fast as the run takes it."""
    cam = config.pipeline.cameras[0]
    own = cam.topic if isinstance(cam, RosbagCameraConfig) else None
    return RosbagCameraConfig(name=cam.name, path=str(bag), topic=topic or own, realtime=False)


def image_count(camera: RosbagCameraConfig) -> int:
    """How many images the run will read (BagError, naming the bag's topics, when it has none to read)."""
    with Bag(camera.path) as bag:
        return bag.require(camera.topic, names.IMAGE_TYPES, "image").count


def bag_frames(config: AppConfig, camera: RosbagCameraConfig) -> Iterator[tuple[str, Frame]]:
    """(frames/<cam>, Frame) for each image the encoder uses, in the bag's order, as capture sends it."""
    try:
        side = model_config(config.model).x_encoder.image_size if config.pipeline.capture.send == "encoder" else None
    except ModelUnavailableError:
        side = None
    cap, enc = config.pipeline.capture, config.pipeline.encoder
    src = RosbagSource(camera)
    src.connect()
    try:
        feed = Feed.of(cap.send, enc.frame_step, enc.stride_frames, side, src.fps, None)
        while True:
            want = feed.want(src.position)
            item = src.read(want)
            if item is None:
                return
            if item.image is None:
                continue
            frame = Frame(
                cam=camera.name,
                index=item.index,
                t_capture_ns=src.last_stamp_ns,
                stream_s=item.stream_s,
                image=centre_crop(item.image, feed.side),
            )
            yield f"frames/{camera.name}", frame
    finally:
        src.close()
