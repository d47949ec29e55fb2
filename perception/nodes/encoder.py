"""Encoder node (the GPU node): sliding windows per camera -> X-encoder + predictor -> embeddings/<cam>.

Frames are buffered per camera in a bounded ring; window k of a camera ends at frame
first + (W-1)*step + k*stride and takes every `step`-th frame back from there. The model runs on a worker
thread, so the event loop keeps ingesting frames meanwhile; each pass takes, per camera, only the newest
due window (older due windows are stale: skipped and counted as `windows_dropped`), batched across
cameras up to `max_batch`. Nothing queues without bound: the ring holds one window span plus a stride.

The last S_V of each camera is kept, and `ask` requests (on the encoder's own RPC endpoint, forwarded by
the world node) re-run only the predictor on it: a candidate list -> nearest answer with scores,
otherwise decoded text.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bus.codec import Envelope
from bus.rpc import RpcError, RpcServer
from perception.messages import Embedding, Frame
from perception.nodes.models import load_model
from perception.nodes.runtime import LatencyWindow, Node


def encoder_endpoint(config) -> str:
    """The encoder's `ask` endpoint: pipeline.encoder.rpc or ipc://{runtime_dir}/encoder."""
    return config.pipeline.encoder.rpc or f"ipc://{config.bus.runtime_dir}/encoder"


@dataclass
class CameraWindows:
    """Per-camera frame ring and window schedule."""

    frames: collections.deque  # of Frame, bounded
    next_end: int | None = None  # frame index that completes the next window
    window: int = 0  # windows emitted
    last_index: int = -1
    s_v: Any = None  # torch [1, N, Dv] of the newest window
    s_v_info: dict = field(default_factory=dict)


@dataclass
class WindowJob:
    cam: str
    window: int
    clip: np.ndarray  # uint8 [T, H, W, 3]
    first: Frame
    last: Frame


class EncoderNode(Node):
    name = "encoder"
    topics = ("frames/",)

    async def setup(self) -> None:
        enc = self.config.pipeline.encoder
        self.model, self.model_id = await asyncio.to_thread(load_model, self.config.model, enc.threads)
        self.W = enc.window_frames or self.model.cfg.x_encoder.frames
        self.step = enc.frame_step
        self.stride = enc.stride_frames
        self.span = (self.W - 1) * self.step + 1  # camera frames covered by one window
        self.cams: dict[str, CameraWindows] = {}
        self.work = asyncio.Event()
        self.model_lock = threading.Lock()  # one forward at a time (worker and ask share the model)
        self.embed_latency = LatencyWindow()
        self.forward_ms = LatencyWindow()
        self.rpc = RpcServer(self.config.bus, {"ask": self._ask, "info": self._info},
                             endpoint=encoder_endpoint(self.config), name=self.name)
        self.rpc.bind()
        self.log.info("encoder ready", model=self.model_id, window_frames=self.W, frame_step=self.step,
                      stride_frames=self.stride, rpc=self.rpc.endpoint)

    def background(self) -> list:
        return [self._worker(), self.rpc.run()]

    def extra_stats(self) -> dict[str, float]:
        return {**self.embed_latency.summary("embed_latency"), **self.forward_ms.summary("forward")}

    # -- frames in ----------------------------------------------------------------------------------------

    async def process(self, env: Envelope) -> None:
        frame = env.msg
        if not isinstance(frame, Frame):
            self.counters["ignored"] += 1
            return
        cam = self.cams.get(frame.cam)
        if cam is None or frame.index <= cam.last_index:  # new camera, or its source restarted
            if cam is not None:
                self.counters["camera_resets"] += 1
            cam = self.cams[frame.cam] = CameraWindows(collections.deque(maxlen=self.span + self.stride))
            cam.next_end = frame.index + self.span - 1
        cam.frames.append(frame)
        cam.last_index = frame.index
        self.counters["frames"] += 1
        if frame.index >= cam.next_end:
            self.work.set()

    def _due_jobs(self) -> list[WindowJob]:
        """The newest due window of each camera (stale ones skipped), oldest camera first, up to max_batch."""
        jobs = []
        for name, cam in self.cams.items():
            if cam.next_end is None or cam.last_index < cam.next_end:
                continue
            behind = (cam.last_index - cam.next_end) // self.stride  # complete windows we are late for
            if behind:
                self.counters["windows_dropped"] += behind
            end = cam.next_end + behind * self.stride
            cam.next_end = end + self.stride
            try:
                clip, first, last = self._clip(cam, end)
            except ValueError as exc:  # frames of different sizes in one window: skip it, keep going
                self.report_error("window", exc, camera=name)
                continue
            if clip is None:
                self.counters["windows_incomplete"] += 1
                continue
            jobs.append(WindowJob(name, cam.window, clip, first, last))
            cam.window += 1
        jobs.sort(key=lambda j: j.last.t_capture_ns)
        if len(jobs) > self.config.pipeline.encoder.max_batch:
            self.counters["windows_dropped"] += len(jobs) - self.config.pipeline.encoder.max_batch
            jobs = jobs[-self.config.pipeline.encoder.max_batch :]  # newest win
        return jobs

    def _clip(self, cam: CameraWindows, end: int) -> tuple[np.ndarray | None, Frame | None, Frame | None]:
        """Frames end-(W-1)*step ... end by step; a missing frame (dropped upstream) -> nearest earlier one."""
        by_index = {f.index: f for f in cam.frames}
        oldest = cam.frames[0].index
        picked = []
        for target in range(end - (self.W - 1) * self.step, end + 1, self.step):
            if target < oldest:
                return None, None, None
            i = target
            while i not in by_index and i > oldest:
                i -= 1
            if i not in by_index:
                return None, None, None
            if i != target:
                self.counters["frames_substituted"] += 1
            picked.append(by_index[i])
        return np.stack([f.image for f in picked]), picked[0], picked[-1]

    # -- model --------------------------------------------------------------------------------------------

    def _forward(self, clips: np.ndarray):
        """uint8 [B, T, H, W, 3] -> (S_V [B, N, Dv], S^_Y [B, D] float32 numpy). Runs on a worker thread."""
        import torch

        with self.model_lock:
            x = torch.from_numpy(clips).permute(0, 1, 4, 2, 3)  # [B, T, 3, H, W]
            s_v = self.model.encode_video(x)  # [B, N, Dv]
            s_hat = self.model.predict(s_v, self.config.pipeline.encoder.query)  # [B, D]
        return s_v, s_hat.float().cpu().numpy()

    async def _worker(self) -> None:
        while True:
            await self.work.wait()
            self.work.clear()
            try:
                await self._run_due()
            except Exception as exc:  # never let one bad pass stop the encoder
                self.report_error("worker", exc)

    async def _run_due(self) -> None:
        """Encode the due windows (grouped by frame size, one batch per group) and publish them."""
        jobs = self._due_jobs()
        if not jobs:
            return
        shapes = {j.clip.shape for j in jobs}
        groups = [[j for j in jobs if j.clip.shape == s] for s in shapes]  # cameras of one size batch
        for group in groups:
            t0 = time.perf_counter_ns()
            try:
                s_v, s_hat = await asyncio.to_thread(self._forward, np.stack([j.clip for j in group]))
            except Exception as exc:
                self.report_error("forward", exc, cameras=[j.cam for j in group])
                continue
            self.forward_ms.add((time.perf_counter_ns() - t0) / 1e6)
            self.counters["batches"] += 1
            done_ns = time.time_ns()
            for k, job in enumerate(group):
                cam = self.cams.get(job.cam)
                if cam is not None:
                    cam.s_v = s_v[k : k + 1]
                    cam.s_v_info = {"window": job.window, "start_s": job.first.stream_s,
                                    "end_s": job.last.stream_s, "end_ns": job.last.t_capture_ns}
                self.publish(f"embeddings/{job.cam}", Embedding(
                    cam=job.cam, window=job.window, start_ns=job.first.t_capture_ns,
                    end_ns=job.last.t_capture_ns, start_s=job.first.stream_s, end_s=job.last.stream_s,
                    model_id=self.model_id, t_capture_ns=job.last.t_capture_ns, t_done_ns=done_ns,
                    embedding=s_hat[k],
                ))
                self.counters["windows"] += 1
                self.embed_latency.add((done_ns - job.last.t_capture_ns) / 1e6)
        if any(c.next_end is not None and c.last_index >= c.next_end for c in self.cams.values()):
            self.work.set()  # more became due while the model ran

    # -- ask ----------------------------------------------------------------------------------------------

    def _answer(self, cam: CameraWindows, question: str, choices: list[str] | None) -> dict[str, Any]:
        with self.model_lock:
            s_hat = self.model.predict(cam.s_v, question)  # [1, D]
            if choices:
                ans = self.model.answer(s_hat, choices)
                scores = ans.scores[0, : len(choices)].tolist()
                return {"answer": ans.choices[0], "scores": dict(zip(choices, [round(s, 4) for s in scores]))}
            return {"text": self.model.decode(s_hat)[0]}

    async def _ask(self, params: dict[str, Any]) -> dict[str, Any]:
        question = params.get("question")
        choices = params.get("choices") or None
        if not isinstance(question, str) or not question.strip():
            raise RpcError("bad_request", "ask needs a non-empty 'question' string")
        if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices)):
            raise RpcError("bad_request", "'choices' must be a list of non-empty strings")
        name = params.get("camera") or (next(iter(self.cams)) if self.cams else None)
        cam = self.cams.get(name) if name else None
        if cam is None or cam.s_v is None:
            known = sorted(c for c, v in self.cams.items() if v.s_v is not None)
            raise RpcError("not_ready", f"no window encoded yet for camera {name!r}; cameras with windows: {known}")
        result = await asyncio.to_thread(self._answer, cam, question, choices)
        self.counters["asks"] += 1
        return {"camera": name, "question": question, **cam.s_v_info, "model_id": self.model_id, **result}

    async def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"model_id": self.model_id, "window_frames": self.W, "frame_step": self.step,
                "stride_frames": self.stride, "cameras": {n: c.window for n, c in self.cams.items()}}


NODE = EncoderNode
