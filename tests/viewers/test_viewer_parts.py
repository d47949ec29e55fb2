"""The viewers' small parts, without a bus: the frame rate gate, the watch list a viewer scores, the JPEG
encoder, entity names, the loopback rule and the shipped Foxglove layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bus.security import SecurityConfigError
from perception.messages import Frame, WatchItem
from perception.nodes.config import WatchConfig
from perception.viewers.feed import Feed, FrameGate, ViewSink
from perception.viewers.foxglove_bridge import FoxgloveBridge
from perception.viewers.foxglove_layout import layout_json
from perception.viewers.foxglove_sink import KINDS
from perception.viewers.images import ImageEncoder
from perception.viewers.rerun_sink import slug
from perception.viewers.texts import MAX_WATCHES, TextTable, WatchSet, parse_labels
from tests.support import REPO

from .conftest import decode_image


def frame(cam: str, t_s: float, i: int = 0) -> Frame:
    return Frame(cam=cam, index=i, t_capture_ns=int(1e18 + t_s * 1e9), image=np.zeros((4, 4, 3), np.uint8))


def test_frame_gate_limits_each_camera_by_capture_time():
    gate = FrameGate(10)
    taken = {cam: sum(gate.take(frame(cam, i / 30)) for i in range(60)) for cam in ("a", "b")}
    assert taken == {"a": 20, "b": 20}  # 2 s at 30 fps -> 10 per second, per camera
    assert gate.take(frame("a", 0.0))  # capture time went back (a restarted camera): starts over
    every = FrameGate(0)
    assert all(every.take(frame("a", 0.0)) for _ in range(5))


def test_a_camera_with_full_resolution_frames_is_shown_with_those():
    """capture.full_fps: frames_full/<cam> carries the camera's pixels; frames/ the encoder's 64 px crops."""

    class Sink(ViewSink):
        def __init__(self) -> None:
            self.shown: list[tuple[str, tuple[int, ...]]] = []

        def frame(self, frame, data, fmt, t_ns) -> None:
            self.shown.append((frame.cam, frame.image.shape))

    sink = Sink()
    feed = Feed(sink, max_fps=0)
    small = Frame(cam="a", index=0, t_capture_ns=1, image=np.zeros((8, 8, 3), np.uint8))
    big = Frame(cam="a", index=0, t_capture_ns=1, image=np.zeros((24, 32, 3), np.uint8))
    other = Frame(cam="b", index=0, t_capture_ns=1, image=np.zeros((8, 8, 3), np.uint8))
    for topic, msg in [("frames/a", small), ("frames_full/a", big), ("frames/a", small), ("frames/b", other)]:
        feed.push(topic, msg, 0)
    assert sink.shown == [("a", (8, 8, 3)), ("a", (24, 32, 3)), ("b", (8, 8, 3))]
    assert feed.counters["frames_small_skipped"] == 1


def test_watch_set_takes_the_worlds_list_and_drops_what_the_world_would_refuse():
    ws = WatchSet([WatchConfig(label="a red shape", enter=0.6, leave=0.4)])
    assert [w.id for w in ws.watches] == ["config:a red shape"]
    items = [
        WatchItem(id="config:a red shape", phrase="a red shape", enter=0.6, leave=0.4, source="config"),
        WatchItem(id="w-0123abcd", phrase="a cross", camera="cam1", enter=0.5, leave=0.4, source="runtime"),
        WatchItem(id="not-an-id", phrase="x", enter=0.5, leave=0.4, source="runtime"),  # bad id
        WatchItem(id="w-00000001", phrase="y", enter=0.3, leave=0.5, source="runtime"),  # leave > enter
    ]
    assert ws.update(items) and ws.rejected == 2
    assert [w.phrase for w in ws.watches] == ["a red shape", "a cross"]
    assert not ws.update(items)  # the same list again: no change

    texts = TextTable()
    texts.add(["a red shape", "a cross"], np.eye(2, 3, dtype=np.float32))
    e = np.array([1.0, 1.0, 0.0], np.float32)
    assert [(w.phrase, round(s, 4)) for w, s in ws.scores("cam0", e, texts)] == [("a red shape", 0.7071)]
    assert [w.phrase for w, _ in ws.scores("cam1", e, texts)] == ["a red shape", "a cross"]

    flood = [
        WatchItem(id=f"w-{i:08x}", phrase=f"p{i}", enter=0.5, leave=0.4, source="runtime")
        for i in range(MAX_WATCHES + 5)
    ]
    ws.update(flood)
    assert len(ws.watches) == MAX_WATCHES


def test_text_table_is_bounded_and_keeps_one_dimension():
    t = TextTable(max_texts=2)
    t.add(["a", "b", "c"], np.ones((3, 4), np.float32))
    assert t.missing(["a", "b", "c"]) == ["a"]
    np.testing.assert_allclose(np.linalg.norm(t.matrix(["b", "c"]), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="dimension"):
        t.add(["d"], np.ones((1, 5), np.float32))


def test_labels_parse_and_default():
    assert parse_labels(" a red shape, a cross ,,a red shape") == ["a red shape", "a cross"]
    assert len(parse_labels(None)) == 16 and parse_labels("")[:2] == ["a red shape", "a green shape"]
    with pytest.raises(ValueError, match="at most"):
        parse_labels(",".join(f"t{i}" for i in range(100)))


@pytest.mark.parametrize(
    "shape, fmt",
    [((64, 64, 3), "png"), ((33, 47, 3), "png"), ((24, 24), "png"), ((240, 320, 3), "jpeg"), ((161, 203, 3), "jpeg")],
    ids=["small", "odd", "grey", "camera", "odd-camera"],
)
def test_frames_compress_lossless_when_small_and_as_jpeg_above(shape, fmt):
    rng = np.random.default_rng(0)
    image = np.zeros(shape, np.uint8)
    image[4:20, 6:18] = 200 if len(shape) == 2 else rng.integers(0, 255, 3, dtype=np.uint8)
    encoder = ImageEncoder()
    data, got = encoder.encode(image)
    assert got == fmt
    assert data[:4] == b"\x89PNG" if fmt == "png" else data[:2] == b"\xff\xd8"
    back = decode_image(data, fmt)
    want = image if len(shape) == 3 else np.repeat(image[:, :, None], 3, axis=2)
    if fmt == "png":
        np.testing.assert_array_equal(back, want)
    else:
        assert back.shape == want.shape and np.abs(back.astype(int) - want.astype(int)).mean() < 2
    assert encoder.encode(image) == (data, fmt)  # the codec context is reused: same bytes


def test_slug_names_entities_distinctly():
    assert slug("the red circle grows") == "the_red_circle_grows"
    assert slug("a/b") != slug("a b") and slug("a/b").startswith("a_b-")


def test_bridge_refuses_a_remote_host_without_the_flag(tmp_path):
    from perception.config import AppConfig

    with pytest.raises(SecurityConfigError, match="no authentication"):
        FoxgloveBridge(AppConfig(), host="0.0.0.0")
    FoxgloveBridge(AppConfig(), host="0.0.0.0", allow_remote=True)  # said on purpose: allowed


def test_shipped_foxglove_layout_is_the_generated_one_and_names_real_topics():
    shipped = (REPO / "docs" / "foxglove-layout.json").read_text()
    assert shipped == layout_json(["cam0"]), (
        "regenerate: python -m perception.viewers.foxglove_layout docs/foxglove-layout.json"
    )
    prefixes = tuple(prefix for prefix, _schema in KINDS.values())
    topics = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("imageTopic", "topicToRender", "value") and isinstance(value, str):
                    topics.append(value.split(".")[0])
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(shipped))
    assert topics and all(t.startswith(prefixes) for t in topics), topics
