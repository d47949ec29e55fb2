"""Encoder node (the GPU node): sliding windows per camera -> X-encoder + predictor -> embeddings/<cam>.

Frames are buffered per camera in a bounded ring and cut into windows by `WindowSchedule`
(perception/nodes/windows.py: window k of a camera ends at frame first + (W-1)*step + k*stride and takes
every `step`-th frame back from there). The model runs on its own thread, back to back while windows are
due (no hand-off to the event loop between passes), so the event loop keeps ingesting frames meanwhile and
publishes results; each pass takes, per camera, only the newest due window (older due windows are stale:
skipped and counted as `windows_dropped`), batched across cameras up to `max_batch`. Nothing queues
without bound: the ring holds one window span plus a stride.

The last S_V of each camera is kept, and `ask` requests (on the encoder's own RPC endpoint, forwarded by
the world node) re-run only the predictor on it: a candidate list -> nearest answer with scores,
otherwise decoded text. Asks are bounded (question and choice lengths, number of choices) and run on the
model thread too, at most one after each window pass, from a small queue (full -> `busy`): however hard
`ask` is called, windows keep flowing. `embed` (perception/nodes/text_embeddings.py: texts -> unit text
embeddings, for the events node's labels and the world's searches, which hold no model) runs the same
way, from a queue of its own.

Cameras are whatever names frames arrive with, so at most `encoder.max_cameras` are tracked; beyond that
the least recently seen camera not in `pipeline.cameras` is evicted (`cameras_evicted`).

`encoder.mode: vlm` swaps the pass for the token-generative baseline (perception/nodes/vlm_captions.py):
the same windows, batches, model thread and `ask`, but each window is captioned on captions/<cam> instead
of embedded; `embed` is refused (no text embeddings in that mode).
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bus.component import Output, on
from bus.logs import RateLimited
from bus.rpc import RpcError, RpcServer, current_deadline
from perception.messages import Caption, Embedding, Frame
from perception.nodes.models import load_model
from perception.nodes.runtime import LatencyWindow, Node
from perception.nodes.text_embeddings import embed_result, embed_texts_param
from perception.nodes.vlm_captions import VLMCaptioner, lm_passes, window_caption
from perception.nodes.windows import CameraWindows, WindowJob, WindowSchedule, stack_windows
from perception.nodes.workers import HOLDS_PREFIX, Liveness, WorkerBeats, WorkerPlan, encoder_endpoint, worker_name

MAX_QUESTION_CHARS = 1000
MAX_CHOICES = 64
MAX_CHOICE_CHARS = 200
MAX_QUEUED_ASKS = 4  # asks waiting for the model thread; more get `busy`
MAX_QUEUED_EMBEDS = 8  # embeds waiting for the model thread; more get `busy`


@dataclass
class ModelJob:
    """One `ask` or `embed` waiting for the model thread; its future lives on the event loop."""

    kind: str  # "asks" or "embeds": its counters
    run: Callable[[], dict[str, Any]]  # on the model thread
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    deadline_ns: int | None  # time.monotonic_ns() after which nobody waits for the answer


class EncoderNode(Node):
    name = "encoder"
    outputs = {"embeddings": Output("embeddings/{cam}", Embedding)}
    vlm_outputs = {"captions": Output("captions/{cam}", Caption)}  # what it publishes in mode vlm

    @classmethod
    def outputs_for(cls, config) -> dict[str, Output]:
        """What an encoder with this AppConfig publishes: captions in mode vlm, else embeddings."""
        return cls.vlm_outputs if config.pipeline.encoder.mode == "vlm" else cls.outputs

    def __init__(self, config, worker: int | None = None) -> None:
        workers = config.pipeline.encoder.workers
        if workers > 1 and (worker is None or not 0 <= worker < workers):
            raise ValueError(f"pipeline.encoder.workers is {workers}: run encoder.0 ... encoder.{workers - 1}")
        self.worker = worker if workers > 1 else None  # which of several workers (perception/nodes/workers.py)
        self.outputs = self.outputs_for(config)
        super().__init__(config)
        self._preloaded = False
        if self.worker is not None:
            self.log = self.log.bind(worker=self.bus_name)

    @property
    def bus_name(self) -> str:
        return worker_name(self.worker) if self.worker is not None else self.name

    def preload(self) -> None:
        """Imports (torch, transformers) and the model: most of a cold start. Run by a spare process
        (`supervisor.spares`) before it is needed, else by `setup`."""
        if self._preloaded:
            return
        enc = self.config.pipeline.encoder
        t0 = time.monotonic()
        self.vlm: VLMCaptioner | None = None
        if enc.mode == "vlm":
            self.vlm = VLMCaptioner.load(self.config, enc.threads)
            self.model_id = self.vlm.model_id
        else:
            self.model, self.model_id = load_model(self.config.model, enc.threads)
            from perception.model.window import WindowRunner  # torch: imported once the node runs

            query = enc.query or self.model.cfg.predictor.default_query  # the model's own prompt unless set
            self.runner = WindowRunner(self.model, query, jit=enc.jit)
        t1 = time.monotonic()
        self.model_lock = threading.Lock()  # one forward at a time (warm-up, windows and asks share the model)
        frames = self.vlm.frames if self.vlm is not None else self.model.cfg.x_encoder.frames
        self._warm_up(enc.window_frames or frames)
        self._preloaded = True
        self.log.info(
            "model loaded",
            model=self.model_id,
            load_s=round(t1 - t0, 3),
            warm_up_s=round(time.monotonic() - t1, 3),
        )

    async def setup(self) -> None:
        enc = self.config.pipeline.encoder
        await asyncio.to_thread(self.preload)
        frames = self.vlm.frames if self.vlm is not None else self.model.cfg.x_encoder.frames
        for key in (
            "frames",
            "windows",
            "windows_failed",
            "windows_dropped",
            "windows_incomplete",
            "frames_substituted",
            "batches",
            "errors",
            "errors.window",
            "cameras_evicted",
            "asks",
            "asks_busy",
            "asks_expired",
            "embeds",
            "embeds_busy",
            "embeds_expired",
            *(("vlm_tokens", "vlm_forwards") if self.vlm is not None else ()),
        ):
            self.counters[key] += 0  # created here: the model thread never adds keys while stats iterate
        # frames come in on the loop, windows go out on the model thread: every access to the schedule
        # under `lock` (its BoundedDict reorders itself even on reads)
        self.schedule = WindowSchedule(
            enc.window_frames or frames,
            enc.frame_step,
            enc.stride_frames,
            enc.max_batch,
            self.counters,
            max_cameras=enc.max_cameras,
            protected=[c.name for c in self.config.pipeline.cameras],
            on_evict=self._camera_evicted,
            on_bad_window=self._bad_window,
        )
        self.W, self.step, self.stride, self.span = (
            self.schedule.W,
            self.schedule.step,
            self.schedule.stride,
            self.schedule.span,
        )
        self.cams = self.schedule.cams
        self.lock = threading.Lock()
        self.asks: queue.Queue[ModelJob] = queue.Queue(maxsize=MAX_QUEUED_ASKS)
        self.embeds: queue.Queue[ModelJob] = queue.Queue(maxsize=MAX_QUEUED_EMBEDS)
        self._evictions = RateLimited(5.0)
        self.due = threading.Event()  # a window is due
        self.stopping = threading.Event()
        self.embed_latency = LatencyWindow()
        self.forward_ms = LatencyWindow()
        self.caption_latency = LatencyWindow()  # mode vlm: last frame's capture -> caption published
        if self.worker is not None:
            self._join_workers()
        self.rpc = RpcServer(
            self.config.bus,
            {"ask": self._ask, "embed": self._embed, "info": self._info},
            endpoint=encoder_endpoint(self.config, self.worker),
            name=self.bus_name,
        )
        self.rpc.bind()
        self.log.info(
            "encoder ready",
            mode=enc.mode,
            model=self.model_id,
            window_frames=self.W,
            frame_step=self.step,
            stride_frames=self.stride,
            rpc=self.rpc.endpoint,
            worker=self.bus_name,
        )

    def _warm_up(self, window_frames: int) -> None:
        """Run (and so trace) the pass for every batch shape the config already tells - synthetic cameras
        render at a known size - before the node reports ready: a first trace takes up to a second, and
        windows that arrive meanwhile would go stale and be dropped."""
        if not self.config.pipeline.encoder.jit or self.vlm is not None:  # the VLM pass is not traced
            return
        # capture sends the model's square (pipeline.capture.send: encoder) for cameras that do not say
        # their size (files, devices): known here too
        square = self.model.cfg.x_encoder.image_size if self.config.pipeline.capture.send == "encoder" else None
        known = [c.frame_size_px or square for c in self.config.pipeline.cameras]
        sizes = collections.Counter(size for size in known if size)
        rng = np.random.default_rng(0)
        for size, cams in sizes.items():
            for b in range(1, min(cams, self.config.pipeline.encoder.max_batch) + 1):
                self._forward(rng.integers(0, 256, (b, window_frames, size, size, 3), dtype=np.uint8))

    def background(self) -> list:
        tasks = [self._worker(), self.rpc.run()]
        if self.worker is not None:
            tasks += [self.beats.run(self._heard), self._reassign_loop()]
        return tasks

    # -- several workers (perception/nodes/workers.py) ----------------------------------------------------

    def _join_workers(self) -> None:
        enc = self.config.pipeline.encoder
        for key in ("frames_standby", "reassignments", "cameras_released"):
            self.counters[key] += 0
        now = time.monotonic()
        self.plan = WorkerPlan(enc.workers, tuple(c.name for c in self.config.pipeline.cameras), dict(enc.assign))
        self.liveness = Liveness(enc.workers, self.worker, enc.worker_timeout_s, now)
        self.beats = WorkerBeats(self.config.bus, enc.workers, self.bus_name)
        self._live = self.liveness.live(now)
        self._table = self.plan.assignment(self._live)
        self._claim_at = now + enc.claim_delay_s  # the others hear our first heartbeat and let go first

    def _mine(self, camera: str) -> bool:
        return time.monotonic() >= self._claim_at and self.plan.owner(camera, self._live, self._table) == self.worker

    def _heard(self, k: int, ready: bool) -> None:
        self.liveness.beat(k, time.monotonic(), ready)
        self._reassign()

    async def _reassign_loop(self) -> None:
        """A dead worker sends nothing: its silence is noticed here."""
        while True:
            await asyncio.sleep(0.25)
            self._reassign()

    def _reassign(self) -> None:
        """Take the assignment for the current live set; let go of the cameras no longer ours (their S_V, so
        that asks follow them; the ring stays, on standby, for a later take-over)."""
        live = self.liveness.live(time.monotonic())
        if live == self._live:
            return
        self._live, self._table = live, self.plan.assignment(live)
        with self.lock:
            gone = [
                n for n, c in self.cams.items() if c.s_v_info and self.plan.owner(n, live, self._table) != self.worker
            ]
            for name in gone:
                cam = self.cams[name]
                cam.s_v, cam.s_v_info = None, {}
        self.counters["reassignments"] += 1
        self.counters["cameras_released"] += len(gone)
        mine = [c for c, k in self._table.items() if k == self.worker]
        self.log.info("encoder workers changed", live=[worker_name(k) for k in live], cameras=mine, released=gone)

    def busy(self) -> bool:
        """A window is due, or taken by the model thread and not yet published (or failed)."""
        with self.lock:
            due = self.schedule.any_due()
        c = self.counters
        return due or c["windows_taken"] > c["windows"] + c["windows_failed"]

    def extra_stats(self) -> dict[str, float]:
        held: dict[str, float] = {}
        if self.worker is not None:  # how the world routes an ask to the worker holding the camera
            with self.lock:
                held = {f"{HOLDS_PREFIX}{n}": float(c.s_v_info["window"]) for n, c in self.cams.items() if c.s_v_info}
        return {
            **held,
            **self.embed_latency.summary("embed_latency"),
            **self.forward_ms.summary("forward"),
            **(self.caption_latency.summary("caption_latency") if self.vlm is not None else {}),
            **{f"rpc.{k}": float(v) for k, v in self.rpc.counters.items()},
        }  # busy, expired, forbidden ...

    # -- frames in ----------------------------------------------------------------------------------------

    def _camera_evicted(self, name: str, cam: CameraWindows) -> None:
        self.counters["cameras_evicted"] += 1
        if self._evictions.should_log("camera") is not None:
            self.log.warning(
                "camera evicted: more cameras than encoder.max_cameras",
                camera=name[:64],
                max_cameras=self.cams.max_items,
            )

    def _bad_window(self, camera: str, exc: ValueError) -> None:
        """On the model thread, under `lock`: a window whose frames differ in size was skipped."""
        self.counters["errors"] += 1
        self.counters["errors.window"] += 1
        self.log.error("window failed", error=str(exc), camera=camera)

    @on("frames/{cam}", Frame)
    async def on_frame(self, frame: Frame) -> None:
        standby = self.worker is not None and not self._mine(frame.cam)
        if standby:
            self.counters["frames_standby"] += 1
        with self.lock:
            due = self.schedule.add(frame, standby)
            self.counters["frames"] += 1
            if due:
                self.due.set()

    # -- model --------------------------------------------------------------------------------------------

    def _forward(self, clips: np.ndarray):
        """uint8 [B, T, H, W, 3] -> (S_V [B, N, Dv], S^_Y [B, D] float32 numpy), or in mode vlm
        (S_V, [(caption, tokens)] * B). Runs on a worker thread."""
        import torch

        with self.model_lock:
            if self.vlm is not None:
                return self.vlm(clips)
            s_v, s_hat = self.runner(torch.from_numpy(clips).permute(0, 1, 4, 2, 3))  # [B, T, 3, H, W] in
        return s_v, s_hat.cpu().numpy()

    async def _worker(self) -> None:
        """Own the model thread for the node's lifetime."""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._model_thread, args=(loop,), name="encoder-model", daemon=True)
        self._thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopping.set()
            self.due.set()

    async def teardown(self) -> None:
        """Let the model thread finish its pass (it publishes nothing more once stopping), so that it never
        outlives the event loop it posts results to."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self.stopping.set()
            self.due.set()
            await asyncio.to_thread(thread.join, self.teardown_timeout_s - 1.0)

    def _to_loop(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
        """From the model thread: run `fn(*args)` on the loop; False once the node stops or the loop closed."""
        if self.stopping.is_set():
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to publish to
            self.stopping.set()
            return False
        return True

    def _model_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take due windows and run the model, back to back, without a hand-off to the event loop between
        passes (results are published from the loop via call_soon_threadsafe); one queued ask and one queued
        embed after each pass (or when no window is due), so they never starve windows."""
        while not self.stopping.is_set():
            self.due.wait()
            with self.lock:
                self.due.clear()
                jobs = self.schedule.take_due()
            shapes = {j.shape for j in jobs}
            for shape in shapes:  # cameras whose frames have one size share a batch
                group = [j for j in jobs if j.shape == shape]
                t0 = time.perf_counter_ns()
                try:
                    s_v, s_hat = self._forward(stack_windows(group))
                except Exception as exc:  # never let one bad pass stop the encoder
                    self.counters["windows_failed"] += len(group)
                    self._to_loop(loop, self.report_error, "forward", exc)
                    continue
                forward_ms = (time.perf_counter_ns() - t0) / 1e6
                if not self._to_loop(loop, self._publish_group, group, s_v, s_hat, time.time_ns(), forward_ms):
                    return
            self._serve_one(self.asks)
            self._serve_one(self.embeds)
            with self.lock:
                if not self.asks.empty() or not self.embeds.empty() or self.schedule.any_due():
                    self.due.set()  # more became due while the model ran

    def _publish_group(self, group: list[WindowJob], s_v, out, done_ns: int, forward_ms: float) -> None:
        """`out`: S^_Y [B, D] (an Embedding per window), or in mode vlm [(caption, tokens)] (a Caption)."""
        self.forward_ms.add(forward_ms)
        self.counters["batches"] += 1
        for k, job in enumerate(group):
            with self.lock:
                cam = self.cams.get(job.cam)
                if cam is not None:
                    cam.s_v = s_v[k : k + 1]
                    cam.s_v_info = {
                        "window": job.window,
                        "start_s": job.first.stream_s,
                        "end_s": job.last.stream_s,
                        "end_ns": job.last.t_capture_ns,
                    }
            if self.vlm is not None:
                self._publish_caption(job, *out[k])
                continue
            self.publish(
                Embedding(
                    cam=job.cam,
                    window=job.window,
                    start_ns=job.first.t_capture_ns,
                    end_ns=job.last.t_capture_ns,
                    start_s=job.first.stream_s,
                    end_s=job.last.stream_s,
                    model_id=self.model_id,
                    t_capture_ns=job.last.t_capture_ns,
                    t_done_ns=done_ns,
                    embedding=out[k],
                )
            )
            self.counters["windows"] += 1
            self.embed_latency.add((done_ns - job.last.t_capture_ns) / 1e6)

    def _publish_caption(self, job: WindowJob, text: str, tokens: int) -> None:
        caption = window_caption(job, text, time.time_ns())
        self.publish(caption)
        self.counters["windows"] += 1
        self.counters["vlm_tokens"] += tokens
        self.counters["vlm_forwards"] += lm_passes(tokens)
        self.caption_latency.add(caption.latency_ms)

    # -- ask ----------------------------------------------------------------------------------------------

    def _answer(self, s_v, question: str, choices: list[str] | None) -> dict[str, Any]:
        with self.model_lock:
            if self.vlm is not None:  # scores: log-likelihoods, not cosines
                return self.vlm.answer(s_v, question, choices)
            s_hat = self.model.predict(s_v, question)  # [1, D]
            if choices:
                ans = self.model.answer(s_hat, choices)
                scores = ans.scores[0, : len(choices)].tolist()
                return {"answer": ans.choices[0], "scores": dict(zip(choices, [round(s, 4) for s in scores]))}
            return {"text": self.model.decode(s_hat)[0]}

    def _serve_one(self, jobs: queue.Queue[ModelJob]) -> None:
        """On the model thread: run the oldest queued ask (or embed), unless its caller stopped waiting."""
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return
        result: dict[str, Any] | None = None
        error: BaseException | None = None
        if job.deadline_ns is not None and time.monotonic_ns() > job.deadline_ns:
            self.counters[f"{job.kind}_expired"] += 1
            error = RpcError("expired", f"the {job.kind[:-1]}'s time budget ran out while it waited for the model")
        else:
            try:
                result = job.run()
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
                if name is None:  # nothing seen yet: the camera it will be once its first window comes
                    name = self.config.pipeline.cameras[0].name if self.config.pipeline.cameras else "?"
                raise RpcError(
                    "not_ready",
                    f"no window encoded yet for camera {name!r}: the pipeline is starting or the camera has not "
                    f"sent a full window yet; wait for its first caption and ask again (cameras with windows: "
                    f"{', '.join(known) or 'none yet'})",
                )
        result = await self._on_model_thread(self.asks, "asks", lambda: self._answer(s_v, question, choices))
        return {
            "camera": name,
            "question": question,
            **info,
            "model_id": self.model_id,
            "worker": self.bus_name,
            **result,
        }

    async def _embed(self, params: dict[str, Any]) -> dict[str, Any]:
        texts = embed_texts_param(params)
        if self.vlm is not None:
            raise RpcError("unsupported", "the encoder runs in mode vlm (pipeline.encoder.mode): no text embeddings")

        def run() -> dict[str, Any]:
            with self.model_lock:
                return embed_result(self.model, texts, self.model_id)

        return await self._on_model_thread(self.embeds, "embeds", run)

    async def _on_model_thread(
        self, jobs: queue.Queue[ModelJob], kind: str, run: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Queue `run` for the model thread (full -> `busy`) and wait for its result."""
        loop = asyncio.get_running_loop()
        job = ModelJob(kind, run, loop.create_future(), loop, current_deadline())
        try:
            jobs.put_nowait(job)
        except queue.Full:
            self.counters[f"{kind}_busy"] += 1
            raise RpcError("busy", f"{jobs.maxsize} {kind} already wait for the model; retry later") from None
        self.due.set()  # wake the model thread if it idles
        result = await job.future
        self.counters[kind] += 1
        return result

    async def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            cameras = {n: c.window for n, c in self.cams.items()}
        return {
            "model_id": self.model_id,
            "mode": self.config.pipeline.encoder.mode,
            "worker": self.bus_name,
            "window_frames": self.W,
            "frame_step": self.step,
            "stride_frames": self.stride,
            "cameras": cameras,
        }


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    """On the loop: resolve an ask's future (unless its RPC call was cancelled meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


NODE = EncoderNode
