"""A ROS 2 `sensor_msgs/msg/Image` or `CompressedImage` (as rosbags decodes it, from a bag or a DDS
sample) as our frames: uint8 [H, W, 3] RGB, the encoder's copy scaled so its short side is the model's
input size (area filter), as the capture node makes of a video file's frames.

Encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (its high byte), rgb16/bgr16 (high bytes), yuv422
(UYVY, ROS's `yuv422`/`uyvy`) and yuv422_yuy2 (YUYV, `yuyv`); compressed: JPEG and PNG. Rows are read
by `step`, so padded rows work; a message whose sizes disagree with its data is rejected (ValueError),
and no size a message declares allocates anything: only its own data is viewed and converted.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from perception.nodes.feed import Want, scaled

MAX_PIXELS = 8192 * 8192  # a compressed image declaring more is refused before it is decoded

# encoding -> (channels, bytes per channel)
_LAYOUT = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "8uc1": (1, 1),
    "mono16": (1, 2),
    "16uc1": (1, 2),
    "rgb16": (3, 2),
    "bgr16": (3, 2),
    "yuv422": (2, 1),
    "uyvy": (2, 1),
    "yuv422_yuy2": (2, 1),
    "yuyv": (2, 1),
}
ENCODINGS = tuple(_LAYOUT)


def raw_to_rgb(msg: Any) -> np.ndarray:
    """An Image message's pixels as uint8 [H, W, 3] RGB (a new array, or a view for rgb8 without padding)."""
    encoding = str(msg.encoding).lower()
    if encoding not in _LAYOUT:
        raise ValueError(f"image encoding {msg.encoding!r} not supported; supported: {', '.join(ENCODINGS)}")
    channels, depth = _LAYOUT[encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    row = w * channels * depth
    if h <= 0 or w <= 0 or step < row or data.size < h * step:
        raise ValueError(f"image {w}x{h} {encoding} step {step} does not match its {data.size} bytes")
    rows = data[: h * step].reshape(h, step)[:, :row]
    if depth == 2:  # keep the high byte of each 16-bit sample
        big = bool(msg.is_bigendian)
        rows = rows.reshape(h, w * channels, 2)[:, :, 0 if big else 1]
    if encoding.startswith(("yuv", "uyvy", "yuyv")):
        if w % 2:
            raise ValueError(f"{encoding} image of odd width {w}")
        return _yuv422_to_rgb(rows.reshape(h, w // 2, 4), uyvy=encoding in ("yuv422", "uyvy"))
    pixels = rows.reshape(h, w, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def _yuv422_to_rgb(quads: np.ndarray, *, uyvy: bool) -> np.ndarray:
    """[H, W/2, 4] packed 4:2:2 (UYVY or YUYV) -> [H, W, 3] RGB, BT.601 limited range."""
    q = quads.astype(np.float32)
    if uyvy:
        u, y0, v, y1 = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    else:
        y0, u, y1, v = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    h, half = q.shape[:2]
    y = np.stack([y0, y1], axis=2).reshape(h, half * 2) - 16.0
    u = np.repeat(u, 2, axis=1) - 128.0
    v = np.repeat(v, 2, axis=1) - 128.0
    y *= 1.164
    rgb = np.stack([y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u], axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def compressed_to_rgb(msg: Any, side: int | None = None) -> np.ndarray:
    """A CompressedImage (JPEG or PNG, whatever its `format` says) as uint8 [H, W, 3] RGB; with `side`,
    JPEG decodes at the smallest DCT scale still at least that large (the scaling finishes in `scale`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(bytes(msg.data)))
        if im.format not in ("JPEG", "PNG"):
            raise ValueError(f"compressed image in {im.format}; JPEG and PNG are read")
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"compressed image declares {im.width}x{im.height} pixels")
        if side is not None and im.format == "JPEG":
            im.draft("RGB", (side, side))  # never below the requested size: draft keeps >= it
        return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # PIL's errors for damaged data
        raise ValueError(f"compressed image ({msg.format!r}) cannot be decoded: {exc}") from exc


def scale(rgb: np.ndarray, side: int | None) -> np.ndarray:
    """`rgb` with its short side `side` (area filter), aspect kept; itself when already no larger."""
    size = scaled(rgb.shape[0], rgb.shape[1], side)
    if size is None:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BOX))


def to_frames(msg: Any, compressed: bool, want: Want) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the encoder's copy, the full-resolution copy) of an image message, each only when `want` asks."""
    if not want.pixels:
        return None, None
    if compressed:
        full = compressed_to_rgb(msg, None if want.full else want.side)
    else:
        full = raw_to_rgb(msg)
    feed = scale(full, want.side) if want.feed else None
    return feed, (full if want.full else None)
