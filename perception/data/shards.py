"""Tar shards for millions of clips, in the WebDataset layout, read so that training can scale and resume.

A shard is a plain tar (`shard-000000.tar`); one sample is two members with the same key:
`{key}.{mp4,mkv,...}` (the video file's bytes) and `{key}.json` (its manifest line: start, end, text or
query/answer/candidates, extra keys, and the manifest line number). Any WebDataset reader can read them;
`index.json` beside the shards lists every shard with its sample count, so readers can split exactly.

Why not the `webdataset` package for reading: its pipeline splits by shard per node and worker and shuffles
with a buffer, but it cannot resume mid-epoch at the next unseen sample, which preemptible multi-node
training needs. The format itself is only tar, which the standard library writes and reads.

Reading (`ShardStream`, a torch IterableDataset): every (rank, data-loader worker) slot takes the shards
`order[slot::slots]` of an epoch's seeded shard permutation, so slots read disjoint samples that together
cover the set; within a slot a seeded shuffle buffer mixes samples across its shards. Everything is
deterministic given (seed, epoch), so `skip` samples already consumed by a slot are passed over again
without decoding them, and the stream continues with the next unseen one. Videos are decoded (PyAV,
threaded) only for the samples yielded.

Clips are stored whole: a manifest of many spans of one long video stores that video once per span. Cut the
spans first (or keep one span per file, as ShapesWorld's manifests do).
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bus.logs import get_logger
from bus.reader_limits import SHARD_MAX_JSON_BYTES, SHARD_MAX_MEMBER_BYTES, SHARD_MAX_MEMBERS_PER_SAMPLE
from perception.data.manifest import ManifestDataset, VideoDecodeError, decode_span

log = get_logger("data.shards")
INDEX = "index.json"


class ShardError(ValueError):
    """A shard directory that cannot be read (no index, a missing shard, counts that disagree)."""


@dataclass(frozen=True)
class ShardIndex:
    shards: list[tuple[str, int]]  # (file name, samples)
    manifest: str = ""

    @property
    def samples(self) -> int:
        return sum(n for _, n in self.shards)

    def write(self, out_dir: Path) -> None:
        doc = {"format": "webdataset-tar", "manifest": self.manifest, "samples": self.samples, "shards": self.shards}
        tmp = out_dir / f".{INDEX}.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, out_dir / INDEX)

    @classmethod
    def read(cls, out_dir: str | Path) -> ShardIndex:
        path = Path(out_dir) / INDEX
        try:
            doc = json.loads(path.read_text())
            return cls([(str(name), int(n)) for name, n in doc["shards"]], str(doc.get("manifest", "")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ShardError(f"cannot read the shard index {path}: {exc}") from exc


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: the same manifest gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def write_shards(manifest: str | Path, out_dir: str | Path, shard_size: int) -> ShardIndex:
    """Stream a JSONL manifest into tar shards of `shard_size` samples (the last may be smaller). A video that
    cannot be read stops the run with its manifest line: nothing is silently left out."""
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    ds = ManifestDataset(manifest)  # validates every line first, reporting all bad ones together
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[tuple[str, int]] = []
    tar: tarfile.TarFile | None = None
    tmp = out / ".shard.tmp"
    count = 0  # samples in the shard being written
    for index, (line, entry) in enumerate(ds.entries):
        if tar is None:
            tar, count = tarfile.open(tmp, "w"), 0
        path = ds.video_path(entry)
        try:
            video = path.read_bytes()
        except OSError as exc:
            tar.close()
            tmp.unlink(missing_ok=True)
            raise VideoDecodeError(f"{ds.path}:{line}: cannot read video {path}: {exc}") from exc
        key = f"{index:09d}"
        meta = entry.model_dump(exclude_none=True) | {"line": line}
        meta.pop("video")
        _add(tar, f"{key}{path.suffix.lower() or '.mp4'}", video)
        _add(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
        count += 1
        if count == shard_size or index == len(ds.entries) - 1:
            tar.close()
            tar = None
            name = f"shard-{len(shards):06d}.tar"
            os.replace(tmp, out / name)
            shards.append((name, count))
            log.info("data.shard.written", shard=name, samples=count, done=index + 1, of=len(ds.entries))
    idx = ShardIndex(shards, str(Path(manifest)))
    idx.write(out)
    return idx


class _CappedFile:
    """A shard file whose every read is bounded: tarfile reads a header's declared length (a PAX or GNU
    long-name record) in one call, so a forged length would ask for that much memory."""

    def __init__(self, f: Any, limit: int) -> None:
        self._f, self._limit = f, limit

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._limit:
            raise tarfile.ReadError(f"a tar header asks to read {n} bytes, over the {self._limit} limit")
        return self._f.read(n)

    def seek(self, *args: int) -> int:
        return self._f.seek(*args)

    def tell(self) -> int:
        return self._f.tell()


def _member_limit(name: str) -> int:
    return SHARD_MAX_JSON_BYTES if name.endswith(".json") else SHARD_MAX_MEMBER_BYTES


def iter_shard(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of one tar, in order; members of a key are adjacent.

    A shard is data: a member is read only if its size (for a sparse member, the size it expands to)
    is within bus/reader_limits.py; ShardError otherwise, naming the member."""
    key, parts = None, {}
    with open(path, "rb") as raw, tarfile.open(fileobj=_CappedFile(raw, SHARD_MAX_MEMBER_BYTES), mode="r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stem, _, ext = member.name.partition(".")
            if member.size > (limit := _member_limit(member.name)):
                kind = "a sparse member that expands to" if member.issparse() else "a member of"
                raise ShardError(f"{path}: {member.name[:120]}: {kind} {member.size} bytes, over the {limit} limit")
            if key is not None and stem != key:
                yield key, parts
                parts = {}
            key = stem
            if len(parts) >= SHARD_MAX_MEMBERS_PER_SAMPLE:
                raise ShardError(f"{path}: sample {stem[:80]} has over {SHARD_MAX_MEMBERS_PER_SAMPLE} members")
            parts[ext] = tar.extractfile(member).read(limit)
    if key is not None:
        yield key, parts


def _video_part(parts: dict[str, bytes]) -> tuple[str, bytes] | None:
    return next(((ext, data) for ext, data in parts.items() if ext != "json"), None)


@dataclass
class CheckReport:
    shards: int = 0
    samples: int = 0
    readable: int = 0
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {"shard", "key", "error"}
    index_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unreadable and not self.index_problems


def check_shards(out_dir: str | Path, frames: int = 2, size: int = 16) -> CheckReport:
    """Open every shard and decode every sample's span (a few small frames): counts, and each unreadable
    sample listed with its reason; the index's counts compared with what the shards hold."""
    out = Path(out_dir)
    idx = ShardIndex.read(out)
    rep = CheckReport(shards=len(idx.shards))
    for name, expected in idx.shards:
        path = out / name
        if not path.is_file():
            rep.index_problems.append(f"{name}: listed in {INDEX}, not on disk")
            continue
        found = 0
        try:
            for key, parts in iter_shard(path):
                found += 1
                problem = _check_sample(parts, frames, size)
                if problem:
                    rep.unreadable.append({"shard": name, "key": key, "error": problem})
                else:
                    rep.readable += 1
        except (tarfile.TarError, OSError, ShardError) as exc:
            rep.index_problems.append(f"{name}: unreadable tar after {found} sample(s): {exc}")
        rep.samples += found
        if found != expected:
            rep.index_problems.append(f"{name}: {found} sample(s), the index says {expected}")
    return rep


def _check_sample(parts: dict[str, bytes], frames: int, size: int) -> str | None:
    if "json" not in parts:
        return "no .json member"
    try:
        meta = json.loads(parts["json"])
        start, end = float(meta["start"]), float(meta["end"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"bad .json: {exc}"
    video = _video_part(parts)
    if video is None:
        return "no video member"
    try:
        decode_span(io.BytesIO(video[1]), start, end, frames, size)
    except VideoDecodeError as exc:
        return str(exc)
    return None


class ShardStream(torch.utils.data.IterableDataset):
    """Samples of a shard set for one rank, split across its data-loader workers, shuffled, resumable.

    Items as ManifestDataset's, plus "key" and "shard". `skip` is the number of samples this (rank, worker)
    slot already consumed in this epoch (from a checkpoint); the stream resumes after them."""

    def __init__(
        self,
        shard_dir: str | Path,
        *,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
        seed: int = 0,
        shuffle_buffer: int = 256,
        frames: int = 8,
        size: int = 64,
        skip: int | dict[int, int] = 0,
        decode: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.dir = Path(shard_dir)
        self.index = ShardIndex.read(self.dir)
        self.rank, self.world_size, self.epoch, self.seed = rank, world_size, epoch, seed
        self.shuffle_buffer, self.frames, self.size, self.decode = shuffle_buffer, frames, size, decode
        self.skip = skip

    def slot(self) -> tuple[int, int]:
        """(this slot's number, the number of slots) over ranks x data-loader workers."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * workers + worker, self.world_size * workers

    def shards_of(self, slot: int, slots: int) -> list[str]:
        names = [name for name, _ in self.index.shards]
        random.Random(f"{self.seed}:{self.epoch}:order").shuffle(names)
        return names[slot::slots]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        slot, slots = self.slot()
        skip = self.skip.get(slot, 0) if isinstance(self.skip, dict) else self.skip
        rng = random.Random(f"{self.seed}:{self.epoch}:{slot}")
        for n, picked in enumerate(self._shuffled(slot, slots, rng), start=1):
            if n > skip:  # skipped samples are read, never decoded
                yield self._item(*picked)

    def _shuffled(self, slot: int, slots: int, rng: random.Random) -> Iterator[tuple[str, str, dict[str, bytes]]]:
        """(shard, key, parts) of this slot's shards through the shuffle buffer, then the buffer drained."""
        buffer: list[tuple[str, str, dict[str, bytes]]] = []
        for name in self.shards_of(slot, slots):
            for key, parts in iter_shard(self.dir / name):
                buffer.append((name, key, parts))
                if len(buffer) >= max(1, self.shuffle_buffer):
                    yield buffer.pop(rng.randrange(len(buffer)))
        while buffer:
            yield buffer.pop(rng.randrange(len(buffer)))

    def _item(self, shard: str, key: str, parts: dict[str, bytes], decode: bool | None = None) -> dict[str, Any]:
        meta = json.loads(parts["json"])
        item: dict[str, Any] = {"key": key, "shard": shard, "line": meta.pop("line", None)}
        start, end = meta.pop("start"), meta.pop("end")
        if self.decode if decode is None else decode:
            _, data = _video_part(parts) or ("", b"")
            try:
                frames = decode_span(io.BytesIO(data), start, end, self.frames, self.size)
            except VideoDecodeError as exc:
                raise VideoDecodeError(f"{self.dir / shard}:{key}: {exc}") from exc
            item["video"] = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # [T, C, H, W]
        for k in ("text", "query", "answer", "candidates"):
            if k in meta:
                item[k] = meta.pop(k)
        item["extra"] = meta
        return item
