"""Write ShapesWorld clips and streams as encoded video files (PyAV) with a JSONL manifest.

The manifest is the format `perception.data.manifest.ManifestDataset` reads, so synthetic data and
users' own footage go through the same decoding path. Video paths in a manifest are relative to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bus.logs import get_logger
from perception.data.shapesworld import sample_clip
from perception.data.stream import ShapesStream

log = get_logger("data.video_io")

DEFAULT_CODEC = "libx264"


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str = DEFAULT_CODEC,
    crf: int = 16,
) -> int:
    """Encode uint8 [H, W, 3] frames (H, W even for yuv420p) into `path`; returns the frame count.

    Frame i gets pts i at time base 1/fps, i.e. it is shown over [i/fps, (i+1)/fps).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.pix_fmt = "yuv420p"
        time_base = 1 / rate  # kept locally: the mp4 muxer rewrites stream.time_base on its header
        stream.time_base = time_base
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for img in frames:
            if count == 0:
                stream.height, stream.width = img.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = count
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))  # flush delayed frames
    if count == 0:
        path.unlink(missing_ok=True)
        raise ValueError(f"no frames to write to {path}")
    return count


def write_clip_set(
    out_dir: str | Path,
    count: int,
    seed: int = 0,
    split: str = "train",
    frames: int = 8,
    size: int = 64,
    fps: float = 8.0,
    qa: bool = True,
    codec: str = DEFAULT_CODEC,
) -> Path:
    """Clips 0..count-1 of (seed, split) as out_dir/clip_NNNNN.mp4 plus out_dir/manifest.jsonl.

    One caption line per clip (`text` = canonical caption; `captions` and `slots` ride along), and with
    qa=True one line per question (`query`, `answer`, `candidates`, `kind`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    with manifest.open("w") as fh:
        for index in range(count):
            spec = sample_clip(seed, index, split)
            name = f"clip_{index:05d}.mp4"
            write_video(out_dir / name, spec.render(frames, size), fps, codec)
            span = {"video": name, "start": 0.0, "end": frames / fps}
            fh.write(
                json.dumps(
                    span
                    | {
                        "text": spec.caption,
                        "captions": list(spec.captions),
                        "slots": list(spec.slots),
                    }
                )
                + "\n"
            )
            if qa:
                for q in spec.qa:
                    fh.write(
                        json.dumps(
                            span
                            | {
                                "query": q.question,
                                "answer": q.answer,
                                "candidates": list(q.candidates),
                                "kind": q.kind,
                            }
                        )
                        + "\n"
                    )
    log.info("wrote clip set", dir=str(out_dir), clips=count, split=split, seed=seed)
    return manifest


def write_stream(
    out_dir: str | Path,
    stream: ShapesStream,
    name: str | None = None,
    codec: str = DEFAULT_CODEC,
) -> Path:
    """The stream as out_dir/NAME.mp4 plus out_dir/NAME.jsonl with one caption line per segment."""
    out_dir = Path(out_dir)
    name = name or f"stream_{stream.split}_{stream.seed}"
    video = out_dir / f"{name}.mp4"
    write_video(video, iter(stream), stream.fps, codec)
    manifest = out_dir / f"{name}.jsonl"
    with manifest.open("w") as fh:
        for seg in stream.segments:
            end = min(seg.end_s, stream.num_frames / stream.fps)
            fh.write(json.dumps(seg.to_dict() | {"video": video.name, "end": end}) + "\n")
    log.info("wrote stream", video=str(video), segments=len(stream.segments), seconds=stream.duration_s)
    return manifest
