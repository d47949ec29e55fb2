"""Fixtures for the viewer tests: a recorded session written directly (no pipeline), the small model's text
embeddings, and readers for what the viewers write (Foxglove's protobuf messages, Rerun's .rrd).

The session (`session_recording`) holds every kind of message a pipeline records, on one camera, with
known content: 3 s of 32x32 frames at 30 fps (a square moving right), a window every 0.25 s whose
embedding IS the text embedding of a known text (so the viewers' cosines are 1.0 exactly where the test
says), segments and their captions, a watch crossing, ground truth, the world's watch list and stats.
Its `session` metadata names the small random checkpoint, as `perception record` would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bus.codec import encode
from bus.mcapfile import BusMcapWriter, pack_message
from bus.message import Stats
from perception.config import AppConfig
from perception.messages import (
    Caption,
    DecodeRequest,
    Embedding,
    Event,
    Frame,
    GroundTruthSegment,
    LabelScore,
    WatchItem,
    WatchList,
)

CAM = "cam0"
FPS = 30
SIZE = 32
DURATION_S = 3.0
STRIDE_S = 0.25
LABELS = ["a shape moves right", "a shape grows", "a shape disappears"]
WATCH = "the red circle grows"  # configured
RUNTIME_WATCH = "a purple triangle appears"  # added at run time, for cam0
CAPTIONS = ["the red square moves right", "the red square grows"]


def frame_image(i: int) -> np.ndarray:
    """Frame i: black, with a red 8x8 square at x = i // 3."""
    img = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    x = min(i // 3, SIZE - 8)
    img[12:20, x : x + 8] = (220, 30, 30)
    return img


def window_text(k: int) -> str:
    """The text whose embedding window k carries: the watch phrase on windows 4-5, else a label in turn."""
    return WATCH if k in (4, 5) else LABELS[k % len(LABELS)]


@dataclass
class Session:
    path: Path
    t0_ns: int
    checkpoint: Path
    texts: dict[str, np.ndarray]  # text -> its unit S_Y from the small model
    windows: list[Embedding] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)


@pytest.fixture(scope="session")
def text_embeddings(small_checkpoint) -> dict[str, np.ndarray]:
    """S_Y of the session's texts, computed as the encoder's `embed` computes them."""
    from perception.model import VLJepa
    from perception.nodes.text_embeddings import embed_result

    model = VLJepa.load(small_checkpoint, device="cpu", dtype="float32")
    texts = [*LABELS, WATCH, RUNTIME_WATCH]
    emb = np.asarray(embed_result(model, texts, "test")["embeddings"], dtype=np.float32)
    return dict(zip(texts, emb))


def _writer(path: Path):
    writer = BusMcapWriter(path)
    seqs: dict[str, int] = {}

    def put(topic: str, msg, t_ns: int) -> None:
        seq = seqs.get(topic, 0)
        seqs[topic] = seq + 1
        parts = encode(topic, msg, seq=seq, src="test:1:0", t_ns=t_ns)
        writer.write(
            topic, msg.TYPE, msg.VERSION, seq=seq, t_pub=t_ns, t_log=t_ns + 1000, data=pack_message(parts[1], parts[2:])
        )

    return writer, put


@pytest.fixture(scope="session")
def session_recording(tmp_path_factory, small_checkpoint, text_embeddings) -> Session:
    path = tmp_path_factory.mktemp("viewers") / "session.mcap"
    t0 = time.time_ns() - 60 * 10**9
    s = Session(path, t0, small_checkpoint, text_embeddings)
    config = AppConfig.model_validate(
        {
            "model": {"checkpoint": str(small_checkpoint), "device": "cpu", "dtype": "float32"},
            "pipeline": {"events": {"watch": [{"label": WATCH, "enter": 0.9, "leave": 0.5}]}},
        }
    )
    writer, put = _writer(path)
    writer.metadata("session", {"config": config.model_dump(mode="json"), "model_id": str(small_checkpoint)})
    ns = lambda t_s: t0 + int(t_s * 1e9)  # noqa: E731  stream time -> capture time
    items = [
        WatchItem(id=f"config:{WATCH}", phrase=WATCH, camera=None, enter=0.9, leave=0.5, source="config"),
        WatchItem(id="w-0123abcd", phrase=RUNTIME_WATCH, camera=CAM, enter=0.5, leave=0.4, source="runtime"),
    ]
    events: list[tuple[int, str, object]] = [(ns(0), "watches/all", WatchList(watches=items))]
    events.append(
        (
            ns(0),
            f"truth/{CAM}",
            GroundTruthSegment(
                cam=CAM,
                segment_id=1,
                start_s=0.0,
                end_s=1.5,
                t0_ns=t0,
                text=CAPTIONS[0],
                slots=["red", "square", "move_right"],
            ),
        )
    )
    events.append(
        (
            ns(1.5),
            f"truth/{CAM}",
            GroundTruthSegment(
                cam=CAM,
                segment_id=2,
                start_s=1.5,
                end_s=3.0,
                t0_ns=t0,
                text=CAPTIONS[1],
                slots=["red", "square", "grow"],
            ),
        )
    )
    for i in range(int(DURATION_S * FPS)):
        f = Frame(cam=CAM, index=i, t_capture_ns=ns(i / FPS), stream_s=i / FPS, image=frame_image(i))
        s.frames.append(f)
        events.append((f.t_capture_ns, f"frames/{CAM}", f))
    k = 0
    while (end_s := 0.5 + k * STRIDE_S) <= DURATION_S:
        e = Embedding(
            cam=CAM,
            window=k,
            start_ns=ns(end_s - 0.5),
            end_ns=ns(end_s),
            start_s=end_s - 0.5,
            end_s=end_s,
            model_id="tiny@small:test",
            t_capture_ns=ns(end_s),
            embedding=text_embeddings[window_text(k)],
        )
        s.windows.append(e)
        events.append((e.end_ns + 5_000_000, f"embeddings/{CAM}", e))
        k += 1
    spans = [(0.0, 1.5), (1.5, 3.0)]
    for sid, ((a, b), text) in enumerate(zip(spans, CAPTIONS), start=100):
        mean = text_embeddings[LABELS[0]]
        seg = Event(
            cam=CAM,
            kind="segment",
            segment_id=sid,
            start_ns=ns(a),
            end_ns=ns(b),
            start_s=a,
            end_s=b,
            labels=[LabelScore(label=LABELS[0], score=0.8)],
            t_capture_ns=ns(b),
            embedding=mean,
        )
        req = DecodeRequest(
            cam=CAM,
            segment_id=sid,
            start_ns=ns(a),
            end_ns=ns(b),
            start_s=a,
            end_s=b,
            t_capture_ns=ns(b),
            embedding=mean,
        )
        cap = Caption(
            cam=CAM,
            segment_id=sid,
            text=text,
            start_ns=ns(a),
            end_ns=ns(b),
            start_s=a,
            end_s=b,
            t_capture_ns=ns(b),
            latency_ms=40.0,
        )
        s.captions.append(cap)
        events += [
            (ns(b) + 10**7, f"events/{CAM}", seg),
            (ns(b) + 10**7, f"decode/{CAM}", req),
            (ns(b) + 5 * 10**7, f"captions/{CAM}", cap),
        ]
    for active, t_s in ((True, 1.5), (False, 2.0)):
        w = Event(
            cam=CAM,
            kind="watch",
            segment_id=101,
            start_ns=ns(t_s - 0.5),
            end_ns=ns(t_s),
            start_s=t_s - 0.5,
            end_s=t_s,
            watch=WATCH,
            active=active,
            watch_id=f"config:{WATCH}",
            t_capture_ns=ns(t_s),
        )
        events.append((ns(t_s) + 10**7, f"events/{CAM}", w))
    for j in range(3):
        st = Stats(node="encoder", counters={"windows": float(4 * j), "sub.superseded": float(j), "ready": 1.0})
        events.append((ns(j), "stats/encoder", st))
    events.sort(key=lambda e: e[0])
    for t_ns, topic, msg in events:
        put(topic, msg, t_ns)
    writer.close()
    return s


# -- reading what the viewers wrote ----------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def protobuf_fields(buf: bytes) -> dict[int, list]:
    """The fields of one protobuf message by number (varints as ints, length-delimited as bytes): enough to
    read Foxglove's CompressedImage (timestamp=1, data=2, format=3, frame_id=4) and Log (timestamp=1,
    level=2, message=3, name=4), as their schemas (advertised with each channel) number them."""
    out: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos : pos + n]), pos + n
        elif wire == 1:
            value, pos = bytes(buf[pos : pos + 8]), pos + 8
        elif wire == 5:
            value, pos = bytes(buf[pos : pos + 4]), pos + 4
        else:
            raise ValueError(f"protobuf wire type {wire} at {pos}")
        out.setdefault(number, []).append(value)
    return out


def decode_image(data: bytes, fmt: str) -> np.ndarray:
    """A PNG or JPEG image back to uint8 RGB [H, W, 3] (PyAV, the project's video dependency)."""
    import av

    frames = av.CodecContext.create({"png": "png", "jpeg": "mjpeg"}[fmt], "r").decode(av.Packet(data))
    assert len(frames) == 1
    return frames[0].to_ndarray(format="rgb24")


def rrd_rows(path: Path) -> dict[str, list]:
    """entity path -> the record batches of its chunks, read back with the rerun SDK's own RRD reader."""
    from rerun.chunk import RrdReader

    out: dict[str, list] = {}
    for chunk in RrdReader(str(path)).stream().to_chunks():
        out.setdefault(chunk.entity_path, []).append(chunk.to_record_batch())
    return out


def column(batches: list, suffix: str) -> list:
    """The values of the column whose name ends with `suffix` (e.g. "Scalars:scalars"), over all batches."""
    values, seen = [], []
    for rb in batches:  # an entity's static chunk (e.g. a series' name) has other columns: skipped
        seen += rb.schema.names
        names = [n for n in rb.schema.names if n.endswith(suffix)]
        if names:
            values += rb.column(names[0]).to_pylist()
    assert values, f"no column *{suffix} in {sorted(set(seen))}"
    return values
