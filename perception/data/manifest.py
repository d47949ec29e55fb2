"""Manifest dataset: train and evaluate on your own footage.

A manifest is JSONL, one sample per line, either a caption sample
    {"video": "a.mp4", "start": 1.5, "end": 4.0, "text": "a person opens a door"}
or a question sample
    {"video": "a.mp4", "start": 1.5, "end": 4.0, "query": "what opens?", "answer": "a door",
     "candidates": ["a door", "a window"]}          # candidates optional
Relative video paths are resolved against the manifest's folder; other keys are kept in "extra".
Every line is validated when the manifest is opened, and all bad lines are reported together with
their line numbers. Videos are decoded with PyAV when an item is read: `frames` frames sampled
uniformly over [start, end] (the frame on screen at each sample time), short side resized to `size`,
then centre-cropped to size x size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from bus.logs import get_logger

log = get_logger("data.manifest")


class ManifestError(ValueError):
    """A manifest that cannot be read or has invalid lines; the message names file and line numbers."""


class VideoDecodeError(OSError):
    """A video named by a manifest line that cannot be opened or has no frames in the requested span."""


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    video: str
    start: float
    end: float
    text: str | None = None
    query: str | None = None
    answer: str | None = None
    candidates: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> ManifestEntry:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"need 0 <= start < end, got start={self.start}, end={self.end}")
        has_text = self.text is not None
        has_qa = self.query is not None or self.answer is not None
        if has_text == has_qa:
            raise ValueError("give either 'text', or 'query' and 'answer'")
        if has_qa and (self.query is None or self.answer is None):
            raise ValueError("a question line needs both 'query' and 'answer'")
        if self.candidates is not None and self.answer not in self.candidates:
            raise ValueError(f"answer {self.answer!r} is not among candidates {self.candidates}")
        return self

    @property
    def extra(self) -> dict:
        return dict(self.model_extra or {})


def read_manifest(path: str | Path) -> list[tuple[int, ManifestEntry]]:
    """(line number, entry) for every line (blank lines skipped); one ManifestError lists all bad lines."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    entries, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{path}:{number}: expected a JSON object, got {type(raw).__name__}")
            continue
        try:
            entries.append((number, ManifestEntry.model_validate(raw)))
        except ValidationError as exc:
            why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
            problems.append(f"{path}:{number}: {why}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ManifestError(f"manifest {path} has {len(problems)} bad line(s):\n" + "\n".join(shown))
    if not entries:
        raise ManifestError(f"manifest {path} has no samples")
    return entries


def sample_times(start: float, end: float, frames: int) -> np.ndarray:
    """Centres of `frames` equal bins over [start, end] (seconds)."""
    return start + (np.arange(frames) + 0.5) * (end - start) / frames


def decode_span(path: str | Path | BinaryIO, start: float, end: float, frames: int, size: int) -> np.ndarray:
    """uint8 [T, size, size, 3]: the frames on screen at `sample_times(start, end, frames)`; `path` may be an
    open binary file (a shard member's bytes)."""
    targets = sample_times(start, end, frames)
    try:
        container = av.open(path if hasattr(path, "read") else str(path))
    except (OSError, av.FFmpegError) as exc:
        raise VideoDecodeError(f"cannot open video {path}: {exc}") from exc
    picked: list[np.ndarray | None] = [None] * frames
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"video {path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if start > 0 and stream.time_base is not None:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        k = 0  # next target to fill
        last = None  # (time, rgb) of the latest frame at or before the current target
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                while k < frames and t > targets[k] + 1e-6:
                    picked[k] = last[1] if last is not None else None
                    k += 1
                if k >= frames:
                    break
                last = (t, _resize_crop(frame, size))
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"cannot decode video {path}: {exc}") from exc
        if last is None or last[0] + _frame_seconds(stream) < start - 1e-6:
            raise VideoDecodeError(f"video {path} has no frames in [{start}, {end}] s (it ends earlier)")
        while k < frames:  # targets after the final frame: hold the last one
            picked[k] = last[1]
            k += 1
    if any(p is None for p in picked):
        raise VideoDecodeError(f"video {path} has no frames in [{start}, {end}] s")
    return np.stack(picked)  # [T, size, size, 3]


def _frame_seconds(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.0


def _resize_crop(frame: av.VideoFrame, size: int) -> np.ndarray:
    """Short side to `size` (swscale, area filter), then the centre size x size crop; uint8 [size, size, 3]."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.to_ndarray(width=nw, height=nh, format="rgb24", interpolation="AREA")  # [nh, nw, 3]
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return rgb[y0 : y0 + size, x0 : x0 + size]


class ManifestDataset(torch.utils.data.Dataset):
    """Items: {"video": uint8 [T, C, H, W], "text" | ("query", "answer", "candidates"), "extra", "line"}."""

    def __init__(self, manifest: str | Path, frames: int = 8, size: int = 64) -> None:
        if frames < 1 or size < 1:
            raise ValueError(f"frames and size must be >= 1, got frames={frames}, size={size}")
        self.path = Path(manifest)
        self.root = self.path.parent
        self.entries = read_manifest(self.path)
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.entries)

    def video_path(self, entry: ManifestEntry) -> Path:
        p = Path(entry.video)
        return p if p.is_absolute() else self.root / p

    def __getitem__(self, index: int) -> dict:
        line, entry = self.entries[index]
        path = self.video_path(entry)
        try:
            frames = decode_span(path, entry.start, entry.end, self.frames, self.size)
        except VideoDecodeError as exc:
            raise VideoDecodeError(f"{self.path}:{line}: {exc}") from exc
        item = {
            "video": torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),  # [T, C, H, W]
            "extra": entry.extra,
            "index": index,
            "line": line,
        }
        if entry.text is not None:
            item["text"] = entry.text
        else:
            item |= {"query": entry.query, "answer": entry.answer, "candidates": entry.candidates}
        return item
