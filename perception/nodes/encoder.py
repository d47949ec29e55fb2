"""Encoder node (the GPU node): sliding windows per camera -> X-encoder + predictor -> embeddings/<cam>.

Frames are buffered per camera in a bounded ring; window k of a camera ends at frame
first + (W-1)*step + k*stride and takes every `step`-th frame back from there. The model runs on its own
thread, back to back while windows are due (no hand-off to the event loop between passes), so the event
loop keeps ingesting frames meanwhile and publishes results; each pass takes, per camera, only the newest
due window (older due windows are stale: skipped and counted as `windows_dropped`), batched across
cameras up to `max_batch`. Nothing queues without bound: the ring holds one window span plus a stride.

The last S_V of each camera is kept, and `ask` requests (on the encoder's own RPC endpoint, forwarded by
the world node) re-run only the predictor on it: a candidate list -> nearest answer with scores,
otherwise decoded text. Asks are bounded (question and choice lengths, number of choices) and run on the
model thread too, at most one after each window pass, from a small queue (full -> `busy`): however hard
`ask` is called, windows keep flowing.

Cameras are whatever names frames arrive with, so at most `encoder.max_cameras` are tracked; beyond that
the least recently seen camera not in `pipeline.cameras` is evicted (`cameras_evicted`).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bus.bounded import BoundedDict
from bus.codec import Envelope
from bus.logs import RateLimited
from bus.rpc import RpcError, RpcServer, current_deadline
from perception.messages import Embedding, Frame
from perception.nodes.models import load_model
from perception.nodes.runtime import LatencyWindow, Node

MAX_QUESTION_CHARS = 1000
MAX_CHOICES = 64
MAX_CHOICE_CHARS = 200
MAX_QUEUED_ASKS = 4  # asks waiting for the model thread; more get `busy`


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
class AskJob:
    """One `ask` waiting for the model thread; its future lives on the event loop."""

    s_v: Any  # the camera's newest S_V when the ask came in
    question: str
    choices: list[str] | None
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    deadline_ns: int | None  # time.monotonic_ns() after which nobody waits for the answer


@dataclass
class WindowJob:
    cam: str
    window: int
    frames: list[Frame]  # the window's frames, oldest first; copied once, straight into the batch

    @property
    def first(self) -> Frame:
        return self.frames[0]

    @property
    def last(self) -> Frame:
        return self.frames[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.frames), *self.frames[0].image.shape)  # [T, H, W, 3]


class EncoderNode(Node):
    name = "encoder"
    topics = ("frames/",)

    async def setup(self) -> None:
        enc = self.config.pipeline.encoder
        self.model, self.model_id = await asyncio.to_thread(load_model, self.config.model, enc.threads)
        from perception.model.window import (
            WindowRunner,  # torch: imported once the node runs
        )

        self.runner = WindowRunner(self.model, enc.query, jit=enc.jit)
        self.W = enc.window_frames or self.model.cfg.x_encoder.frames
        self.step = enc.frame_step
        self.stride = enc.stride_frames
        self.span = (self.W - 1) * self.step + 1  # camera frames covered by one window
        configured = frozenset(c.name for c in self.config.pipeline.cameras)
        # cams: frames come in on the loop, windows go out on the model thread: every access under `lock`
        # (BoundedDict reorders itself even on reads). AppConfig refuses more configured cameras than
        # max_cameras; the max() only keeps a hand-built config from evicting nothing forever.
        self.cams: BoundedDict[str, CameraWindows] = BoundedDict(
            max(enc.max_cameras, len(configured)), protected=configured.__contains__,
            on_evict=self._camera_evicted)
        self.lock = threading.Lock()
        self.asks: queue.Queue[AskJob] = queue.Queue(maxsize=MAX_QUEUED_ASKS)
        self._evictions = RateLimited(5.0)
        self.due = threading.Event()  # a window is due
        self.stopping = threading.Event()
        for key in ("frames", "windows", "windows_dropped", "windows_incomplete", "frames_substituted",
                    "batches", "errors", "errors.window", "cameras_evicted", "asks", "asks_busy",
                    "asks_expired"):
            self.counters[key] += 0  # created here: the model thread never adds keys while stats iterate
        self.model_lock = threading.Lock()  # one forward at a time (warm-up, windows and asks share the model)
        self.embed_latency = LatencyWindow()
        self.forward_ms = LatencyWindow()
        await asyncio.to_thread(self._warm_up)
        self.rpc = RpcServer(self.config.bus, {"ask": self._ask, "info": self._info},
                             endpoint=encoder_endpoint(self.config), name=self.name)
        self.rpc.bind()
        self.log.info("encoder ready", model=self.model_id, window_frames=self.W, frame_step=self.step,
                      stride_frames=self.stride, rpc=self.rpc.endpoint)

    def _warm_up(self) -> None:
        """Run (and so trace) the pass for every batch shape the config already tells - synthetic cameras
        render at a known size - before the node reports ready: a first trace takes up to a second, and
        windows that arrive meanwhile would go stale and be dropped."""
        if not self.config.pipeline.encoder.jit:
            return
        sizes = collections.Counter(c.size for c in self.config.pipeline.cameras if c.kind == "synthetic")
        rng = np.random.default_rng(0)
        for size, cams in sizes.items():
            for b in range(1, min(cams, self.config.pipeline.encoder.max_batch) + 1):
                self._forward(rng.integers(0, 256, (b, self.W, size, size, 3), dtype=np.uint8))

    def background(self) -> list:
        return [self._worker(), self.rpc.run()]

    def extra_stats(self) -> dict[str, float]:
        return {**self.embed_latency.summary("embed_latency"), **self.forward_ms.summary("forward"),
                **{f"rpc.{k}": float(v) for k, v in self.rpc.counters.items()}}  # busy, expired, forbidden ...

    # -- frames in ----------------------------------------------------------------------------------------

    def _camera_evicted(self, name: str, cam: CameraWindows) -> None:
        self.counters["cameras_evicted"] += 1
        if self._evictions.should_log("camera") is not None:
            self.log.warning("camera evicted: more cameras than encoder.max_cameras", camera=name[:64],
                             max_cameras=self.cams.max_items)

    async def process(self, env: Envelope) -> None:
        frame = env.msg
        if not isinstance(frame, Frame):
            self.counters["ignored"] += 1
            return
        with self.lock:
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
                self.due.set()

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
                frames = self._window_frames(cam, end)
            except ValueError as exc:  # frames of different sizes in one window: skip it, keep going
                self.counters["errors"] += 1
                self.counters["errors.window"] += 1
                self.log.error("window failed", error=str(exc), camera=name)
                continue
            if frames is None:
                self.counters["windows_incomplete"] += 1
                continue
            jobs.append(WindowJob(name, cam.window, frames))
            cam.window += 1
        jobs.sort(key=lambda j: j.last.t_capture_ns)
        if len(jobs) > self.config.pipeline.encoder.max_batch:
            self.counters["windows_dropped"] += len(jobs) - self.config.pipeline.encoder.max_batch
            jobs = jobs[-self.config.pipeline.encoder.max_batch :]  # newest win
        return jobs

    def _window_frames(self, cam: CameraWindows, end: int) -> list[Frame] | None:
        """Frames end-(W-1)*step ... end by step; a missing frame (dropped upstream) -> nearest earlier one;
        None when the ring no longer reaches back far enough."""
        frames, newest = cam.frames, cam.frames[-1].index
        oldest = frames[0].index
        contiguous = newest - oldest == len(frames) - 1  # the usual case: found by position, no search
        # otherwise by binary search over the ring's increasing indices (a gap may be 2**40 frames wide:
        # counting down through it once froze the model thread)
        indices = None if contiguous else [f.index for f in frames]
        picked = []
        for target in range(end - (self.W - 1) * self.step, end + 1, self.step):
            if target < oldest:
                return None
            if indices is None:
                picked.append(frames[target - oldest])
                continue
            k = bisect.bisect_right(indices, target) - 1  # the nearest frame at or before target
            if indices[k] != target:
                self.counters["frames_substituted"] += 1
            picked.append(frames[k])
        shape = picked[0].image.shape
        if any(f.image.shape != shape for f in picked):
            raise ValueError(f"frames of different sizes in one window: {sorted({f.image.shape for f in picked})}")
        return picked

    @staticmethod
    def _batch(group: list[WindowJob]) -> np.ndarray:
        """uint8 [B, T, H, W, 3], each frame copied once."""
        out = np.empty((len(group), *group[0].shape), dtype=np.uint8)
        for b, job in enumerate(group):
            for t, frame in enumerate(job.frames):
                out[b, t] = frame.image
        return out

    # -- model --------------------------------------------------------------------------------------------

    def _forward(self, clips: np.ndarray):
        """uint8 [B, T, H, W, 3] -> (S_V [B, N, Dv], S^_Y [B, D] float32 numpy). Runs on a worker thread."""
        import torch

        with self.model_lock:
            s_v, s_hat = self.runner(torch.from_numpy(clips).permute(0, 1, 4, 2, 3))  # [B, T, 3, H, W] in
        return s_v, s_hat.cpu().numpy()

    async def _worker(self) -> None:
        """Own the model thread for the node's lifetime."""
        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=self._model_thread, args=(loop,), name="encoder-model", daemon=True)
        thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopping.set()
            self.due.set()

    def _model_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take due windows and run the model, back to back, without a hand-off to the event loop between
        passes (results are published from the loop via call_soon_threadsafe); one queued ask after each
        pass (or when no window is due), so asks never starve windows."""
        while not self.stopping.is_set():
            self.due.wait()
            with self.lock:
                self.due.clear()
                jobs = self._due_jobs()
            shapes = {j.shape for j in jobs}
            for shape in shapes:  # cameras whose frames have one size share a batch
                group = [j for j in jobs if j.shape == shape]
                t0 = time.perf_counter_ns()
                try:
                    s_v, s_hat = self._forward(self._batch(group))
                except Exception as exc:  # never let one bad pass stop the encoder
                    loop.call_soon_threadsafe(self.report_error, "forward", exc)
                    continue
                forward_ms = (time.perf_counter_ns() - t0) / 1e6
                loop.call_soon_threadsafe(self._publish_group, group, s_v, s_hat, time.time_ns(), forward_ms)
            self._serve_one_ask()
            with self.lock:
                if not self.asks.empty() or any(
                        c.next_end is not None and c.last_index >= c.next_end for c in self.cams.values()):
                    self.due.set()  # more became due while the model ran

    def _publish_group(self, group: list[WindowJob], s_v, s_hat: np.ndarray, done_ns: int, forward_ms: float) -> None:
        self.forward_ms.add(forward_ms)
        self.counters["batches"] += 1
        for k, job in enumerate(group):
            with self.lock:
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

    # -- ask ----------------------------------------------------------------------------------------------

    def _answer(self, s_v, question: str, choices: list[str] | None) -> dict[str, Any]:
        with self.model_lock:
            s_hat = self.model.predict(s_v, question)  # [1, D]
            if choices:
                ans = self.model.answer(s_hat, choices)
                scores = ans.scores[0, : len(choices)].tolist()
                return {"answer": ans.choices[0], "scores": dict(zip(choices, [round(s, 4) for s in scores]))}
            return {"text": self.model.decode(s_hat)[0]}

    def _serve_one_ask(self) -> None:
        """On the model thread: answer the oldest queued ask, unless its caller stopped waiting."""
        try:
            job = self.asks.get_nowait()
        except queue.Empty:
            return
        result: dict[str, Any] | None = None
        error: BaseException | None = None
        if job.deadline_ns is not None and time.monotonic_ns() > job.deadline_ns:
            self.counters["asks_expired"] += 1
            error = RpcError("expired", "the ask's time budget ran out while it waited for the model")
        else:
            try:
                result = self._answer(job.s_v, job.question, job.choices)
            except Exception as exc:  # answered as an `internal` error by the RPC server
                error = exc
        try:
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)
        except RuntimeError:  # the loop is closed: the node is stopping, nobody waits
            pass

    @staticmethod
    def _ask_params(params: dict[str, Any]) -> tuple[str, list[str] | None, str | None]:
        """(question, choices, camera), bounded: whatever the caller sends, one ask is one small forward."""
        question, choices, camera = params.get("question"), params.get("choices") or None, params.get("camera")
        if not isinstance(question, str) or not question.strip():
            raise RpcError("bad_request", "ask needs a non-empty 'question' string")
        if len(question) > MAX_QUESTION_CHARS:
            raise RpcError("bad_request", f"'question' has {len(question)} chars; at most {MAX_QUESTION_CHARS}")
        if choices is not None:
            if not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices):
                raise RpcError("bad_request", "'choices' must be a list of non-empty strings")
            if len(choices) > MAX_CHOICES:
                raise RpcError("bad_request", f"{len(choices)} 'choices'; at most {MAX_CHOICES}")
            longest = max(len(c) for c in choices)
            if longest > MAX_CHOICE_CHARS:
                raise RpcError("bad_request", f"a choice has {longest} chars; at most {MAX_CHOICE_CHARS}")
        if camera is not None and not isinstance(camera, str):
            raise RpcError("bad_request", "'camera' must be a camera name")
        return question, choices, camera or None

    async def _ask(self, params: dict[str, Any]) -> dict[str, Any]:
        question, choices, name = self._ask_params(params)
        with self.lock:
            if name is None:  # the first configured camera with windows, else any
                configured = [c.name for c in self.config.pipeline.cameras if c.name in self.cams]
                name = configured[0] if configured else next(iter(self.cams), None)
            cam = self.cams.get(name) if name is not None else None
            s_v, info = (cam.s_v, dict(cam.s_v_info)) if cam is not None else (None, {})
            if s_v is None:
                known = sorted(c for c, v in self.cams.items() if v.s_v is not None)
                raise RpcError("not_ready", f"no window encoded yet for camera {name!r}; cameras with windows: {known}")
        loop = asyncio.get_running_loop()
        job = AskJob(s_v, question, choices, loop.create_future(), loop, current_deadline())
        try:
            self.asks.put_nowait(job)
        except queue.Full:
            self.counters["asks_busy"] += 1
            raise RpcError("busy", f"{MAX_QUEUED_ASKS} asks already wait for the model; retry later") from None
        self.due.set()  # wake the model thread if it idles
        result = await job.future
        self.counters["asks"] += 1
        return {"camera": name, "question": question, **info, "model_id": self.model_id, **result}

    async def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            cameras = {n: c.window for n, c in self.cams.items()}
        return {"model_id": self.model_id, "window_frames": self.W, "frame_step": self.step,
                "stride_frames": self.stride, "cameras": cameras}


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    """On the loop: resolve an ask's future (unless its RPC call was cancelled meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


NODE = EncoderNode
