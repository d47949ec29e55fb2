"""What the capture node sends: only the frames the encoder will use, at the size it will use them, plus an
optional full-resolution copy at a low rate for recorders and viewers. No torch, no sockets.

The encoder's windows take frames whose indices are multiples of gcd(frame_step, stride_frames) (window k
ends at (W-1)*step + k*stride and steps back by `step`: perception/nodes/windows.py), so with the
defaults (8, 8) seven frames in eight are never looked at. `pipeline.capture.send: encoder` (the default)
publishes on frames/<cam> only those, decoded frames of the others never converted to RGB, scaled in
the decoder's own colour conversion (PyAV's swscale, area filter) so their short side is the model's
input size, then centre-cropped to a square of that side: exactly what the X-encoder makes of a frame
(short-side resize, centre crop; it only resized with a bilinear antialiased filter instead of swscale's
area filter), without 6 MB frames crossing the bus, and square frames keep the window pass traceable. `send: all` publishes every frame as the camera delivers it.
`full_fps` adds frames_full/<cam>: every n-th frame (n = round(camera fps / full_fps)) at the camera's own
resolution, for a recorder or a viewer that wants pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Want:
    """What a `Source.read` should produce of the next frame: nothing (it is only consumed), the encoder's
    copy (short side scaled to `side` when the frame is larger; None: as delivered), a full copy, or both."""

    feed: bool = True
    side: int | None = None
    full: bool = False

    @property
    def pixels(self) -> bool:
        return self.feed or self.full


EVERYTHING = Want()


def scaled(height: int, width: int, side: int | None) -> tuple[int, int] | None:
    """(height, width) with the short side `side` and the aspect kept; None when the frame is no larger
    than that already (never upscale)."""
    if side is None or min(height, width) <= side:
        return None
    f = side / min(height, width)
    return max(side, round(height * f)), max(side, round(width * f))


def centre_crop(image, side: int | None):
    """The centred `side` x `side` square of uint8 [H, W, 3] `image` (as the X-encoder crops after its
    short-side resize), contiguous; `image` itself when it is that size or smaller."""
    if side is None:
        return image
    h, w = image.shape[:2]
    if (h, w) == (side, side) or min(h, w) < side:
        return image
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side].copy()


@dataclass(frozen=True)
class Feed:
    """Which source frames go out (by their published index) and how large."""

    every: int = 1  # frames/<cam> carries frame i when i % every == 0
    side: int | None = None  # their short side; None: as the camera delivers them
    full_every: int | None = None  # frames_full/<cam> carries frame i when i % full_every == 0

    @classmethod
    def of(
        cls, send: str, frame_step: int, stride_frames: int, image_size: int, fps: float, full_fps: float | None
    ) -> Feed:
        full_every = max(1, round(fps / full_fps)) if full_fps else None
        if send == "all":
            return cls(1, None, full_every)
        return cls(math.gcd(frame_step, stride_frames), image_size, full_every)

    def want(self, index: int) -> Want:
        return Want(
            feed=index % self.every == 0,
            side=self.side,
            full=self.full_every is not None and index % self.full_every == 0,
        )
