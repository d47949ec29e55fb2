"""The decoder's queue on its own: bounded, batched, a failed batch decoded one by one, nothing lost when
cancelled mid-decode."""

from __future__ import annotations

import asyncio
import collections

import pytest

from perception.nodes.decode_queue import DecodeQueue


def queue(max_pending: int = 100, max_batch: int = 3) -> tuple[DecodeQueue, collections.Counter]:
    counters: collections.Counter[str] = collections.Counter()
    return DecodeQueue(max_pending, max_batch, counters), counters


class Decoder:
    """Upper-cases its inputs; raises on a batch that holds "bad"; waits on `gate` when one is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.delivered: list[tuple[list[str], list[str]]] = []
        self.failed: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def decode(self, batch: list[str]) -> list[str]:
        self.batches.append(list(batch))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if "bad" in batch:
            raise ValueError("cannot decode 'bad'")
        return [x.upper() for x in batch]

    def deliver(self, batch: list[str], texts: list[str]) -> None:
        self.delivered.append((batch, texts))

    def fail(self, item: str, exc: Exception) -> None:
        self.failed.append((item, str(exc)))

    async def drain(self, q: DecodeQueue) -> None:
        await q.drain(self.decode, self.deliver, self.fail)


def test_a_full_queue_drops_its_oldest_request():
    q, counters = queue(max_pending=3)
    for x in "abcde":
        q.push(x)
    assert list(q.pending) == ["c", "d", "e"] and counters["requests_dropped"] == 2 and len(q) == 3


async def test_what_waits_is_decoded_in_batches_of_max_batch_in_order():
    q, counters = queue(max_batch=3)
    for x in "abcdefg":
        q.push(x)
    d = Decoder()
    await d.drain(q)
    assert d.batches == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert [texts for _, texts in d.delivered] == [["A", "B", "C"], ["D", "E", "F"], ["G"]]
    assert not q.pending and counters["batches_split"] == 0 and d.failed == []


async def test_a_batch_that_fails_is_decoded_one_by_one_and_only_the_bad_request_is_lost():
    q, counters = queue(max_batch=4)
    for x in ["a", "bad", "c", "d", "e"]:
        q.push(x)
    d = Decoder()
    await d.drain(q)
    assert d.batches == [["a", "bad", "c", "d"], ["a"], ["bad"], ["c"], ["d"], ["e"]]
    assert [b for b, _ in d.delivered] == [["a"], ["c"], ["d"], ["e"]]
    assert d.failed == [("bad", "cannot decode 'bad'")] and counters["batches_split"] == 1


@pytest.mark.parametrize("split", [False, True], ids=["whole-batch", "mid-split"])
async def test_a_cancelled_decode_puts_its_requests_back_at_the_front_in_order(split):
    q, _ = queue(max_batch=3)
    items = ["a", "bad", "c", "d", "e"] if split else ["a", "b", "c", "d", "e"]
    for x in items:
        q.push(x)
    d = Decoder()
    if split:  # let the batch fail and the first single pass, then hold the second single
        d.gate = asyncio.Event()
        d.gate.set()
        original = d.decode

        async def decode(batch):
            if batch == ["bad"]:
                d.gate.clear()
            return await original(batch)

        task = asyncio.create_task(q.drain(decode, d.deliver, d.fail))
        while d.batches[-1:] != [["bad"]]:
            await asyncio.sleep(0)
    else:
        d.gate = asyncio.Event()
        task = asyncio.create_task(d.drain(q))
        await d.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if split:  # "a" was delivered; "bad" (in hand) and "c" (the rest of the split) are back before d, e
        assert [b for b, _ in d.delivered] == [["a"]] and list(q.pending) == ["bad", "c", "d", "e"]
    else:
        assert d.delivered == [] and list(q.pending) == items
    waiting = list(q.pending)
    q.push("f")
    d2 = Decoder()
    await d2.drain(q)  # the final drain (the node's teardown) decodes all of them
    assert [x for b, _ in d2.delivered for x in b] == [x for x in [*waiting, "f"] if x != "bad"]


def test_nonsense_bounds_are_refused():
    with pytest.raises(ValueError):
        DecodeQueue(0, 1, collections.Counter())
