"""Camera frames compressed for the viewers, with FFmpeg's encoders through PyAV (already the video
dependency: no image library added).

A frame on the bus is raw uint8 RGB [H, W, 3] (perception/messages.py `Frame`); a viewer on the other end
of a WebSocket or in an .rrd file wants it compressed. Two formats, chosen by size:

- PNG (lossless) up to `PNG_MAX_PIXELS` (128 x 128): a viewer shows exactly the pixels the model saw, and
  for small frames PNG is also the smaller (a 64 px ShapesWorld frame: 0.7 KB as PNG, 1.6 KB as JPEG);
- JPEG above (a camera's 640x480: ~40 KB against ~400 KB as PNG). Chroma is kept at full resolution
  (4:4:4, which every JPEG decoder reads): at 4:2:0 coloured edges lose a third of their accuracy.

Encoding takes well under 1 ms for a 64 px frame and ~4 ms for 640x480 on one core. One `ImageEncoder` per
camera (codec contexts per frame size), used by one thread at a time.
"""

from __future__ import annotations

import fractions

import numpy as np

PNG_MAX_PIXELS = 128 * 128
JPEG_PIX_FMT = "yuvj444p"  # full-range YCbCr, full chroma
JPEG_MAX_SIDE = 65_500  # JPEG stores sides in 16 bits (FFmpeg's mjpeg refuses more): wider frames go as PNG
MAX_SIDE = 1 << 20  # a frame side no camera delivers: refused, not handed to an encoder


class FrameError(ValueError):
    """A frame no image encoder takes (not uint8 RGB or grey, empty, absurdly large); the message says why."""


class ImageEncoder:
    """uint8 RGB [H, W, 3] or grey [H, W] -> (bytes, "png" | "jpeg")."""

    def __init__(self, png_max_pixels: int = PNG_MAX_PIXELS) -> None:
        self.png_max_pixels = png_max_pixels
        self._ctx = None
        self._key: tuple[str, int, int] | None = None

    def _context(self, fmt: str, h: int, w: int):
        import av

        if self._key != (fmt, h, w):
            ctx = av.CodecContext.create("png" if fmt == "png" else "mjpeg", "w")
            ctx.width, ctx.height = w, h
            ctx.pix_fmt = "rgb24" if fmt == "png" else JPEG_PIX_FMT
            ctx.time_base = fractions.Fraction(1, 30)  # required by the codec; unused for still images
            ctx.open()
            self._ctx, self._key = ctx, (fmt, h, w)
        return self._ctx

    def encode(self, image: np.ndarray) -> tuple[bytes, str]:
        import av

        if image.dtype != np.uint8:
            raise FrameError(f"a frame to encode must be uint8, got {image.dtype}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or min(image.shape[:2]) < 1:
            raise FrameError(f"a frame to encode must be [H, W, 3] or [H, W], got {list(image.shape)[:8]}")
        if max(image.shape[:2]) > MAX_SIDE:
            raise FrameError(f"a frame side of {max(image.shape[:2])} pixels is over {MAX_SIDE}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        h, w = image.shape[:2]
        fmt = "png" if h * w <= self.png_max_pixels or max(h, w) > JPEG_MAX_SIDE else "jpeg"
        try:
            ctx = self._context(fmt, h, w)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if fmt == "jpeg":
                frame = frame.reformat(format=JPEG_PIX_FMT)
            packets = ctx.encode(frame)  # both are intra-only: one packet (one image) per frame, no delay
        except av.error.FFmpegError as exc:  # a size the codec refuses: the frame's fault, not a crash
            self._ctx = self._key = None
            raise FrameError(f"the {fmt} encoder refused a {w}x{h} frame: {exc}") from None
        if len(packets) != 1:
            raise RuntimeError(f"the {fmt} encoder returned {len(packets)} packets for one frame")
        return bytes(packets[0]), fmt
