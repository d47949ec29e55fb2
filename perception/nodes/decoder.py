"""Decoder node: Y-decoder over decode/<cam> requests -> captions/<cam>.

Requests queue (bounded: the oldest are dropped and counted if the decoder falls far behind); the worker
decodes whatever is waiting in one batch of up to `max_batch`, on a worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import time

import numpy as np

from bus.codec import Envelope
from perception.messages import Caption, DecodeRequest
from perception.nodes.models import load_model
from perception.nodes.runtime import LatencyWindow, Node

MAX_PENDING = 256


class DecoderNode(Node):
    name = "decoder"
    topics = ("decode/",)

    async def setup(self) -> None:
        dec = self.config.pipeline.decoder
        self.model, _ = await asyncio.to_thread(load_model, self.config.model, dec.threads)
        self.pending: collections.deque[DecodeRequest] = collections.deque()
        self.work = asyncio.Event()
        self.latency = LatencyWindow()

    def background(self) -> list:
        return [self._worker()]

    def extra_stats(self) -> dict[str, float]:
        return self.latency.summary("caption_latency")

    async def process(self, env: Envelope) -> None:
        req = env.msg
        if not isinstance(req, DecodeRequest):
            self.counters["ignored"] += 1
            return
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.counters["requests_dropped"] += 1
        self.pending.append(req)
        self.work.set()

    async def teardown(self) -> None:
        """Decode what is still waiting (the events node flushes its open segments as it stops)."""
        await asyncio.sleep(0.2)  # requests published just before we were told to stop
        while self.sub is not None and (env := self.sub.recv_nowait()) is not None:
            await self.process(env)
        if self.pending:
            self.log.info("decoding remaining requests before exit", pending=len(self.pending))
            await self._drain()

    def _decode(self, embeddings: np.ndarray) -> list[str]:
        import torch

        return self.model.decode(torch.from_numpy(embeddings), beams=self.config.pipeline.decoder.beams)

    async def _worker(self) -> None:
        while True:
            await self.work.wait()
            self.work.clear()
            await self._drain()

    async def _drain(self) -> None:
        max_batch = self.config.pipeline.decoder.max_batch
        while self.pending:
            batch = [self.pending.popleft() for _ in range(min(max_batch, len(self.pending)))]
            try:
                texts = await asyncio.to_thread(self._decode, np.stack([r.embedding for r in batch]))
            except asyncio.CancelledError:
                self.pending.extendleft(reversed(batch))  # stopping: teardown decodes them again
                raise
            except Exception as exc:
                self.report_error("decode", exc, segments=[(r.cam, r.segment_id) for r in batch])
                continue
            self.counters["batches"] += 1
            now = time.time_ns()
            for req, text in zip(batch, texts):
                latency_ms = (now - req.t_capture_ns) / 1e6
                self.publish(f"captions/{req.cam}", Caption(
                    cam=req.cam, segment_id=req.segment_id, text=text, start_ns=req.start_ns,
                    end_ns=req.end_ns, start_s=req.start_s, end_s=req.end_s, t_capture_ns=req.t_capture_ns,
                    latency_ms=round(latency_ms, 2),
                ))
                self.latency.add(latency_ms)
                self.counters["decodes"] += 1


NODE = DecoderNode
