"""Capture node: every configured camera -> frames/<cam> with capture timestamps (one task per camera).

It sends what the encoder uses and no more (perception/nodes/feed.py): with `pipeline.capture.send:
encoder` only every gcd(frame_step, stride_frames)-th frame, scaled to the model's input size as it is
converted from the decoder's pixels and centre-cropped to a square, as the X-encoder would; the others are consumed without being converted (or, synthetic,
rendered). `capture.full_fps` adds full-resolution frames on frames_full/<cam> for recorders and viewers.
Frame indices stay the source's, so windows are the same whichever is sent.

Synthetic cameras also publish each ground-truth segment on truth/<cam> when it starts, for evaluation;
ROS 2 cameras (perception/ros2/cameras.py) the poses they read beside their images on pose/<cam>.
A source that cannot be opened, or that fails mid-stream, is logged with the reason and retried with
exponential backoff; the node and the rest of the pipeline keep running. One that can never work
(`SourceUnavailableError.permanent`: not a video, no OpenCV) is logged once and not retried. Live pacing never builds a
backlog: a synthetic camera that is late skips to the frame due now, a file drops the frames it is late for.
"""

from __future__ import annotations

import asyncio
import time

from bus.component import Output
from perception.messages import Frame, GroundTruthSegment, Pose
from perception.nodes.config import CameraConfig
from perception.nodes.feed import Feed, centre_crop
from perception.nodes.models import ModelUnavailableError, model_config
from perception.nodes.runtime import Node
from perception.nodes.sources import Source, SourceUnavailableError, SyntheticSource, make_source


class CaptureNode(Node):
    name = "capture"
    outputs = {
        "frames": Output("frames/{cam}", Frame),
        "full": Output("frames_full/{cam}", Frame),
        "truth": Output("truth/{cam}", GroundTruthSegment),
        "pose": Output("pose/{cam}", Pose),
    }

    async def setup(self) -> None:
        self.image_size: int | None = None
        if self.config.pipeline.capture.send == "encoder":
            try:  # config.json only: capture never loads the model
                self.image_size = model_config(self.config.model).x_encoder.image_size
            except ModelUnavailableError as exc:
                self.log.warning("model config unreadable: frames go out at the camera's size", error=str(exc))

    def feed(self, src: Source) -> Feed:
        cap, enc = self.config.pipeline.capture, self.config.pipeline.encoder
        return Feed.of(cap.send, enc.frame_step, enc.stride_frames, self.image_size, src.fps, cap.full_fps)

    def background(self) -> list:
        return [self._camera_loop(cam) for cam in self.config.pipeline.cameras]

    async def _camera_loop(self, cam: CameraConfig) -> None:
        backoff = cam.retry_initial_s
        offset = 0  # frame indices keep increasing across reconnects and loops
        t_offset = 0.0  # and so do stream seconds: a looping file's second pass starts after its first
        while True:
            src = make_source(cam)
            try:
                await asyncio.to_thread(src.connect)
            except SourceUnavailableError as exc:
                self.counters[f"{cam.name}.source_errors"] += 1
                if exc.permanent:
                    self.log.error("source cannot work, not retried", camera=cam.name, error=str(exc))
                    await asyncio.Event().wait()  # stay up (idle) until stopped: the other cameras go on
                self.log.error("source unavailable, retrying", camera=cam.name, error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cam.retry_max_s)
                continue
            self.log.info("source connected", camera=cam.name, source=cam.describe(), fps=src.fps)
            try:
                offset, t_offset = await self._stream(cam, src, offset, t_offset)
                backoff = cam.retry_initial_s
            except SourceUnavailableError as exc:
                self.counters[f"{cam.name}.source_errors"] += 1
                self.log.error("source failed, retrying", camera=cam.name, error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cam.retry_max_s)
                continue
            finally:
                src.close()
            if not cam.loop:
                self.log.info("source ended", camera=cam.name, frames=offset)
                await asyncio.Event().wait()  # stay up (idle) until stopped

    async def _stream(self, cam: CameraConfig, src: Source, offset: int, t_offset: float) -> tuple[int, float]:
        """Publish frames until the source ends; returns the next frame index and stream-seconds offsets
        (frame `i` of this pass goes out as `offset + i` at `t_offset + its time in the source`)."""
        fps = src.fps
        feed = self.feed(src)
        t0_mono = time.monotonic()
        t0_wall_ns = time.time_ns()
        synthetic = isinstance(src, SyntheticSource)
        segments = list(src.stream.segments) if synthetic else []
        next_segment = 0
        last_index = offset - 1
        last_s = -1.0 / fps  # the source time of the last frame read
        while True:
            if synthetic and cam.realtime:
                due = int((time.monotonic() - t0_mono) * fps)  # the frame a live camera shows now
                if due > src.position:
                    self.counters[f"{cam.name}.frames_skipped"] += due - src.position
                    src.seek(due)
            want = feed.want(offset + src.position)
            item = src.read(want) if synthetic else await asyncio.to_thread(src.read, want)
            self._drain(cam, src)
            if item is None:
                return last_index + 1, t_offset + last_s + 1.0 / fps
            last_index = offset + item.index
            last_s = item.stream_s
            if not want.pixels:  # a frame no window uses: consumed, never converted, not paced
                self.counters[f"{cam.name}.frames_unsent"] += 1
                continue
            if cam.realtime:
                delay = t0_mono + item.stream_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif not synthetic and delay < -1.5 / fps:
                    self.counters[f"{cam.name}.frames_skipped"] += 1  # a file we are late for: drop it
                    continue
            else:
                await asyncio.sleep(0)
            while synthetic and next_segment < len(segments) and segments[next_segment].start_s <= item.stream_s:
                seg = segments[next_segment]
                self.publish(
                    GroundTruthSegment(
                        cam=cam.name,
                        segment_id=next_segment,
                        start_s=t_offset + seg.start_s,
                        end_s=t_offset + seg.end_s,
                        t0_ns=t0_wall_ns,
                        text=seg.caption,
                        slots=list(seg.slots),
                    )
                )
                next_segment += 1
            t_ns = time.time_ns()
            small = centre_crop(item.image, feed.side) if item.image is not None else None
            for output, image in (("frames", small), ("full", item.full)):
                if image is not None:
                    frame = Frame(
                        cam=cam.name,
                        index=last_index,
                        t_capture_ns=t_ns,
                        stream_s=t_offset + item.stream_s,
                        image=image,
                    )
                    self.publish(frame, output=output)
            if item.image is not None:
                self.counters[f"{cam.name}.frames"] += 1

    def _drain(self, cam: CameraConfig, src: Source) -> None:
        """What the source read beside its frames (poses) goes out; what it counted joins our counters."""
        for pose in src.take_poses():
            self.publish(pose, output="pose")
            self.counters[f"{cam.name}.poses"] += 1
        if src.counts:
            for key, n in src.counts.items():
                self.counters[f"{cam.name}.{key}"] += n
            src.counts.clear()


NODE = CaptureNode
