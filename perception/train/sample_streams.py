"""A fixed number of sample streams over a shard set, so that the data order does not depend on the world size.

Stream v (of V) is an endless sequence of epochs; in epoch e it reads the shards `order_e[v::V]` of that
epoch's seeded shard permutation through a seeded shuffle buffer (perception/data/shards.py ShardStream,
with slot v of V). Rank r owns the streams v = r, r + world, ...; its data-loader workers split those
streams between them. Every micro-step takes the same number k of consecutive samples from every stream, so

    the global micro-batch at micro-step m = samples [m*k, (m+1)*k) of every stream v = 0..V-1,

whatever the number of ranks and workers: a run on 4 ranks and its resume on 1 see the same batches, and a
checkpoint needs only the step to know where every stream stands (step * samples per stream per step).
V must be a multiple of ranks x workers (each worker then owns the same number of streams, and the
round-robin of the DataLoader keeps them level).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from perception.data.shards import ShardIndex, ShardStream
from perception.train.feature_cache import FeatureCache


class StreamLayoutError(ValueError):
    """Streams that cannot be split evenly over this world (ranks x data-loader workers)."""


def check_layout(streams: int, world: int, workers: int, shards: int) -> None:
    slots = world * max(1, workers)
    if streams % slots:
        raise StreamLayoutError(
            f"data.streams = {streams} is not a multiple of ranks x data-loader workers = {world} x "
            f"{max(1, workers)}: set data.streams to a multiple of {slots} (a resumed run keeps the streams of "
            "its checkpoint, so choose the world sizes it will run on)"
        )
    if shards < streams:
        raise StreamLayoutError(f"{shards} shard(s) for {streams} streams: write at least one shard per stream")


class SampleStreams(torch.utils.data.IterableDataset):
    """Items of this rank's streams, each tagged with its stream; workers interleave their streams evenly."""

    def __init__(
        self,
        shard_dir: str | Path,
        *,
        streams: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 256,
        frames: int = 8,
        size: int = 64,
        start: int = 0,
        cache: FeatureCache | None = None,
    ) -> None:
        self.dir, self.streams, self.rank, self.world = Path(shard_dir), streams, rank, world_size
        self.seed, self.shuffle_buffer, self.frames, self.size = seed, shuffle_buffer, frames, size
        self.start = start  # samples of every stream already consumed (from the checkpoint's step)
        self.cache = cache
        self.index = ShardIndex.read(self.dir)
        self.sizes = dict(self.index.shards)

    def owned(self) -> list[int]:
        """This rank's streams, in order."""
        return list(range(self.rank, self.streams, self.world))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        mine = [self.stream(v) for v in self.owned()[worker::workers]]
        while True:  # endless: the trainer decides when to stop
            for it in mine:
                yield next(it)

    def stream(self, v: int) -> Iterator[dict[str, Any]]:
        """Stream v from sample `start` on: whole epochs before it are passed over by their sizes, the rest
        of its epoch is read through the shuffle buffer without decoding."""
        epoch, skip = 0, self.start
        while skip >= (n := self._epoch_samples(v, epoch)):
            skip, epoch = skip - n, epoch + 1
        while True:
            ds = self._epoch(epoch)
            rng = random.Random(f"{self.seed}:{epoch}:{v}")  # ShardStream's own rule for slot v
            for n, picked in enumerate(ds._shuffled(v, self.streams, rng)):
                if n < skip:
                    continue
                yield self._item(ds, v, epoch, picked)
            epoch, skip = epoch + 1, 0

    def _epoch(self, epoch: int) -> ShardStream:
        return ShardStream(
            self.dir,
            epoch=epoch,
            seed=self.seed,
            shuffle_buffer=self.shuffle_buffer,
            frames=self.frames,
            size=self.size,
            decode=False,
        )

    def _epoch_samples(self, v: int, epoch: int) -> int:
        return sum(self.sizes[name] for name in self._epoch(epoch).shards_of(v, self.streams))

    def _item(self, ds: ShardStream, v: int, epoch: int, picked: tuple) -> dict[str, Any]:
        shard, key, _ = picked
        cached = self.cache.lookup(shard, key) if self.cache is not None else None
        item = ds._item(*picked, decode=cached is None)
        if cached is not None:
            item["features"] = cached  # [N, Dv] S_V, as the live encoder computed it
        item["stream"], item["epoch"] = v, epoch
        return item


class MicroBatches:
    """Turn this rank's interleaved items into micro-batches of k consecutive samples of every owned stream,
    in stream order. Items wait per stream until every stream has k (bounded: workers keep streams level)."""

    def __init__(self, items: Iterator[dict[str, Any]], owned: list[int], per_stream: int) -> None:
        self.items, self.owned, self.k = items, owned, per_stream
        self.queues: dict[int, deque] = {v: deque() for v in owned}

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        return self

    def __next__(self) -> list[dict[str, Any]]:
        while any(len(q) < self.k for q in self.queues.values()):
            item = next(self.items)
            self.queues[item["stream"]].append(item)
        return [self.queues[v].popleft() for v in self.owned for _ in range(self.k)]
