"""Decoder node: Y-decoder over decode/<cam> requests -> captions/<cam>.

Requests queue (bounded: the oldest are dropped and counted if the decoder falls far behind); the worker
decodes whatever is waiting in one batch of up to `max_batch`, on a worker thread. The queue and its
batching are `DecodeQueue` (perception/nodes/decode_queue.py).

Anyone on the bus can publish a DecodeRequest, so one is checked before it is queued (a float embedding
of the model's shape [D], finite) and rejected, counted, otherwise; and a batch whose decode fails anyway
is decoded again one request at a time, so only the bad request is lost, never its batch-mates.

A caption whose text says what the camera's previous one said is not news: it goes out marked
`repeat=True` (a continuation of the previous caption, now up to its `end_s`) and is counted as
`captions_repeated`; `perception up` does not print it, and a subscriber that wants news skips it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np

from bus.bounded import BoundedDict
from bus.component import Output, on
from perception.messages import Caption, DecodeRequest
from perception.nodes.decode_queue import DecodeQueue
from perception.nodes.models import load_model
from perception.nodes.runtime import LatencyWindow, Node

if TYPE_CHECKING:  # torch loads when the node runs, not when it is imported
    from perception.model.phrase_bank import Description

MAX_PENDING = 256
MAX_CAMERAS = 1024  # cameras whose last caption text is kept (names come from requests: bounded)


class DecoderNode(Node):
    name = "decoder"
    outputs = {"captions": Output("captions/{cam}", Caption)}

    async def setup(self) -> None:
        dec = self.config.pipeline.decoder
        self.model, _ = await asyncio.to_thread(load_model, self.config.model, dec.threads)
        self.queue: DecodeQueue[DecodeRequest, Description] = DecodeQueue(MAX_PENDING, dec.max_batch, self.counters)
        self.pending = self.queue.pending  # the requests waiting, oldest first
        self.work = asyncio.Event()
        self.decoding = False  # a batch is in hand (`busy`)
        self.latency = LatencyWindow()
        self.dim = int(self.model.cfg.embed_dim)
        self.last_text: BoundedDict[str, str] = BoundedDict(MAX_CAMERAS)  # cam -> its previous caption's text
        for key in ("rejected", "decodes", "batches", "batches_split", "captions_repeated"):
            self.counters[key] += 0

    def background(self) -> list:
        return [self._worker()]

    def extra_stats(self) -> dict[str, float]:
        return self.latency.summary("caption_latency")

    def busy(self) -> bool:
        """Requests wait, or a batch is being decoded."""
        return bool(self.queue.pending) or self.work.is_set() or self.decoding

    @on("decode/{cam}", DecodeRequest)
    async def on_request(self, req: DecodeRequest) -> None:
        problem = self._invalid(req)
        if problem is not None:
            self.counters["rejected"] += 1
            self.report_error("request", ValueError(problem), cam=req.cam[:64], segment_id=req.segment_id)
            return
        req.embedding = np.ascontiguousarray(req.embedding, dtype=np.float32)
        self.queue.push(req)
        self.work.set()

    def _invalid(self, req: DecodeRequest) -> str | None:
        """Why `req` cannot be decoded (None when it can): the batch would fail on it."""
        emb = req.embedding
        if not isinstance(emb, np.ndarray) or not np.issubdtype(emb.dtype, np.floating):
            return f"embedding must be a float array, got {getattr(emb, 'dtype', type(emb).__name__)}"
        if emb.shape != (self.dim,):
            return f"embedding shape {emb.shape}, the model's is ({self.dim},)"
        if not np.isfinite(emb).all():
            return "embedding has NaN or infinite values"
        return None

    async def teardown(self) -> None:
        """Decode what is still waiting (the events node flushes its open segments as it stops)."""
        if not hasattr(self, "queue"):  # setup failed (no model): nothing was queued, and its error says why
            return
        await asyncio.sleep(0.2)  # requests published just before we were told to stop
        while self.sub is not None and (env := self.sub.recv_nowait()) is not None:
            await self.dispatch(env)
        if self.pending:
            self.log.info("decoding remaining requests before exit", pending=len(self.pending))
            await self._drain()

    def _decode(self, embeddings: np.ndarray) -> list:
        """[B,D] -> one Description per row (decoded, or retrieved from the phrase bank: the model knows)."""
        import torch

        return self.model.describe(torch.from_numpy(embeddings), beams=self.config.pipeline.decoder.beams)

    async def _worker(self) -> None:
        while True:
            await self.work.wait()
            self.work.clear()
            await self._drain()

    async def _drain(self) -> None:
        self.decoding = True
        try:
            await self.queue.drain(self._decode_batch, self._publish, self._failed)
        finally:
            self.decoding = False

    async def _decode_batch(self, batch: list[DecodeRequest]) -> list[Description]:
        return await asyncio.to_thread(self._decode, np.stack([r.embedding for r in batch]))

    def _failed(self, req: DecodeRequest, exc: Exception) -> None:
        self.report_error("decode", exc, cam=req.cam[:64], segment_id=req.segment_id)

    def _publish(self, batch: list[DecodeRequest], texts: list[Description]) -> None:
        self.counters["batches"] += 1
        now = time.time_ns()
        for req, said in zip(batch, texts):
            latency_ms = (now - req.t_capture_ns) / 1e6
            repeat = _same(self.last_text.get(req.cam), said.text)
            try:
                self.publish(
                    Caption(
                        cam=req.cam,
                        segment_id=req.segment_id,
                        text=said.text,
                        retrieved=said.retrieved,
                        score=said.score,
                        start_ns=req.start_ns,
                        end_ns=req.end_ns,
                        start_s=req.start_s,
                        end_s=req.end_s,
                        t_capture_ns=req.t_capture_ns,
                        latency_ms=round(latency_ms, 2),
                        repeat=repeat,
                    )
                )
            except Exception as exc:  # e.g. fields the codec cannot encode: this caption only, not the worker
                self.report_error("publish", exc, cam=req.cam[:64], segment_id=req.segment_id)
                continue
            self.latency.add(latency_ms)
            self.counters["decodes"] += 1
            self.counters["captions_repeated"] += repeat
            self.last_text[req.cam] = said.text


def _same(previous: str | None, text: str) -> bool:
    """Whether `text` says what `previous` said (case and spacing aside)."""
    return previous is not None and " ".join(previous.lower().split()) == " ".join(text.lower().split())


NODE = DecoderNode
