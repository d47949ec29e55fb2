"""The decoder's queue and batching, apart from the process: no torch, no sockets, tested directly
(tests/nodes/test_decode_queue.py).

Requests wait in a bounded FIFO (full: the oldest is dropped and counted as `requests_dropped`); `drain`
decodes whatever waits in batches of up to `max_batch`, and
- a batch whose decode raises is decoded again one request at a time (`batches_split`), so only the request
  that broke it is lost (`failed` hears of it), never its batch-mates;
- when cancelled mid-decode (the node is stopping), the batch in hand and the rest of a split go back to the
  front of the queue, in order, for a final drain to decode.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")  # a request
R = TypeVar("R")  # its result (a caption text)


class DecodeQueue(Generic[T, R]):
    """Bounded FIFO of requests, drained in batches. Counts `requests_dropped` and `batches_split` in
    the `counters` it is given."""

    def __init__(self, max_pending: int, max_batch: int, counters: MutableMapping[str, int]) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError(f"max_pending and max_batch must be >= 1, got {max_pending}, {max_batch}")
        self.max_pending, self.max_batch, self.counters = max_pending, max_batch, counters
        self.pending: collections.deque[T] = collections.deque()
        for key in ("requests_dropped", "batches_split"):
            counters[key] += 0

    def __len__(self) -> int:
        return len(self.pending)

    def push(self, item: T) -> None:
        """Queue `item`; when `max_pending` already wait, the oldest is dropped (the decoder is far behind)."""
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.counters["requests_dropped"] += 1
        self.pending.append(item)

    def take(self) -> list[T]:
        """The next batch: up to `max_batch` requests from the front."""
        return [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]

    def requeue(self, items: Sequence[T]) -> None:
        """Put `items` back at the front, in their order."""
        self.pending.extendleft(reversed(list(items)))

    async def drain(
        self,
        decode: Callable[[list[T]], Awaitable[list[R]]],
        deliver: Callable[[list[T], list[R]], None],
        failed: Callable[[T, Exception], None],
    ) -> None:
        """Decode until the queue is empty: `deliver(batch, results)` for each decoded batch (or single),
        `failed(request, error)` for a request that fails on its own."""
        while self.pending:
            batch = self.take()
            results = await self._attempt(decode, failed, batch)
            if results is not None:
                deliver(batch, results)
            elif len(batch) > 1:  # one request may have broken the batch: the others must not be lost
                self.counters["batches_split"] += 1
                for k, item in enumerate(batch):
                    results = await self._attempt(decode, failed, [item], rest=batch[k + 1 :])
                    if results is not None:
                        deliver([item], results)

    async def _attempt(
        self,
        decode: Callable[[list[T]], Awaitable[list[R]]],
        failed: Callable[[T, Exception], None],
        batch: list[T],
        rest: Sequence[T] = (),
    ) -> list[R] | None:
        """Results for `batch`, or None if its decode raised (reported for a single request); when cancelled,
        `batch` and `rest` go back to the front of the queue."""
        try:
            return await decode(batch)
        except asyncio.CancelledError:
            self.requeue([*batch, *rest])
            raise
        except Exception as exc:
            if len(batch) == 1:
                failed(batch[0], exc)
            return None
