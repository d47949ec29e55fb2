"""Capture node: every configured camera -> frames/<cam> with capture timestamps (one task per camera).

Synthetic cameras also publish each ground-truth segment on truth/<cam> when it starts, for evaluation.
A source that cannot be opened, or that fails mid-stream, is logged with the reason and retried with
exponential backoff; the node and the rest of the pipeline keep running. Live pacing never builds a
backlog: a synthetic camera that is late skips to the frame due now, a file drops the frames it is late for.
"""

from __future__ import annotations

import asyncio
import time

from bus.component import Output
from perception.messages import Frame, GroundTruthSegment
from perception.nodes.config import CameraConfig
from perception.nodes.runtime import Node
from perception.nodes.sources import Source, SourceUnavailableError, SyntheticSource, make_source


class CaptureNode(Node):
    name = "capture"
    outputs = {"frames": Output("frames/{cam}", Frame), "truth": Output("truth/{cam}", GroundTruthSegment)}

    def background(self) -> list:
        return [self._camera_loop(cam) for cam in self.config.pipeline.cameras]

    async def _camera_loop(self, cam: CameraConfig) -> None:
        backoff = cam.retry_initial_s
        offset = 0  # frame indices keep increasing across reconnects and loops
        while True:
            src = make_source(cam)
            try:
                await asyncio.to_thread(src.connect)
            except SourceUnavailableError as exc:
                self.counters[f"{cam.name}.source_errors"] += 1
                self.log.error("source unavailable", camera=cam.name, error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cam.retry_max_s)
                continue
            self.log.info("source connected", camera=cam.name, source=cam.describe(), fps=src.fps)
            try:
                offset = await self._stream(cam, src, offset)
                backoff = cam.retry_initial_s
            except SourceUnavailableError as exc:
                self.counters[f"{cam.name}.source_errors"] += 1
                self.log.error("source failed", camera=cam.name, error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cam.retry_max_s)
                continue
            finally:
                src.close()
            if not cam.loop:
                self.log.info("source ended", camera=cam.name, frames=offset)
                await asyncio.Event().wait()  # stay up (idle) until stopped

    async def _stream(self, cam: CameraConfig, src: Source, offset: int) -> int:
        """Publish frames until the source ends; returns the next frame index offset."""
        fps = src.fps
        t0_mono = time.monotonic()
        t0_wall_ns = time.time_ns()
        synthetic = isinstance(src, SyntheticSource)
        segments = list(src.stream.segments) if synthetic else []
        next_segment = 0
        last_index = offset - 1
        while True:
            if synthetic and cam.realtime:
                due = int((time.monotonic() - t0_mono) * fps)  # the frame a live camera shows now
                if due > src.position:
                    self.counters[f"{cam.name}.frames_skipped"] += due - src.position
                    src.seek(due)
            item = src.read() if synthetic else await asyncio.to_thread(src.read)
            if item is None:
                return last_index + 1
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
                        start_s=seg.start_s,
                        end_s=seg.end_s,
                        t0_ns=t0_wall_ns,
                        text=seg.caption,
                        slots=list(seg.slots),
                    )
                )
                next_segment += 1
            last_index = offset + item.index
            self.publish(
                Frame(
                    cam=cam.name,
                    index=last_index,
                    t_capture_ns=time.time_ns(),
                    stream_s=item.stream_s,
                    image=item.image,
                )
            )
            self.counters[f"{cam.name}.frames"] += 1


NODE = CaptureNode
