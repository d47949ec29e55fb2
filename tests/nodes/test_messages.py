"""Every perception message survives the real wire codec, arrays included, and bad bodies are rejected."""

from __future__ import annotations

import numpy as np
import pytest

from bus.codec import DecodeError, decode, encode
from perception.messages import (
    Caption,
    DecodeRequest,
    Embedding,
    Event,
    Frame,
    GroundTruthSegment,
    LabelScore,
    Pose,
    WatchItem,
    WatchList,
)

EMB = np.linspace(-1, 1, 32, dtype=np.float32)
SAMPLES = [
    Frame(
        cam="cam0",
        index=7,
        t_capture_ns=123,
        stream_s=0.25,
        image=np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3),
    ),
    GroundTruthSegment(
        cam="cam0",
        segment_id=2,
        start_s=1.0,
        end_s=3.5,
        t0_ns=5,
        text="the red circle grows",
        slots=["red", "circle", "grow"],
    ),
    Embedding(
        cam="cam1",
        window=3,
        start_ns=1,
        end_ns=2,
        start_s=0.1,
        end_s=2.0,
        model_id="tiny@x",
        t_capture_ns=2,
        t_done_ns=3,
        embedding=EMB,
    ),
    Event(
        cam="cam0",
        kind="segment",
        segment_id=4,
        start_ns=1,
        end_ns=9,
        labels=[LabelScore(label="a", score=0.5)],
        t_capture_ns=9,
        embedding=EMB,
    ),
    Event(cam="cam0", kind="watch", segment_id=4, start_ns=1, end_ns=9, watch="a purple triangle appears", active=True),
    Event(cam="cam0", kind="watch", segment_id=4, start_ns=1, end_ns=9, watch="p", active=False, watch_id="w-0123abcd"),
    WatchList(
        watches=[
            WatchItem(id="config:p", phrase="p", enter=0.5, leave=0.4, source="config"),
            WatchItem(id="w-0123abcd", phrase="q", camera="cam1", enter=0.9, leave=-0.2, source="runtime"),
        ]
    ),
    DecodeRequest(cam="cam0", segment_id=4, start_ns=1, end_ns=9, t_capture_ns=9, embedding=EMB),
    Caption(
        cam="cam0", segment_id=4, text="the red circle grows", start_ns=1, end_ns=9, t_capture_ns=9, latency_ms=12.5
    ),
    Pose(cam="cam0", frame_id="map", child_frame_id="base_link", stamp_ns=7, x=1.5, y=-2.0, yaw=0.5, qz=0.25, qw=0.97),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=[type(m).__name__ + str(i) for i, m in enumerate(SAMPLES)])
def test_round_trip(msg):
    parts = encode("t/cam0", msg, seq=1, src="test", t_ns=10)
    back = decode([bytes(p) for p in parts]).msg
    assert type(back) is type(msg)
    for name in type(msg).model_fields:
        a, b = getattr(msg, name), getattr(back, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        else:
            assert a == b, name
    assert str(back)  # compact log line works


def test_invalid_body_is_a_decode_error():
    parts = encode("frames/cam0", SAMPLES[0], seq=0, src="test", t_ns=1)
    import msgpack

    header = msgpack.unpackb(bytes(parts[1]), raw=False)
    header["body"]["index"] = -5  # violates index >= 0
    parts[1] = msgpack.packb(header, use_bin_type=True)
    with pytest.raises(DecodeError) as err:
        decode([bytes(p) for p in parts])
    assert err.value.reason == "invalid_body"
