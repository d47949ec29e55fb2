"""`perception info IN --export foxglove OUT`: a recording converted to Foxglove's well-known schemas, read
back with the official `mcap` reader: every channel carries the schema it declares, and the frames,
captions, events and stats in it are the recorded ones."""

from __future__ import annotations

import json

import numpy as np
from mcap.reader import make_reader

from perception.viewers.foxglove_export import export_foxglove
from tests.support import perception_child

from .conftest import CAM, CAPTIONS, WATCH, decode_image, protobuf_fields

EXPECTED = {  # topic -> (message encoding, schema name, schema encoding)
    f"/frames/{CAM}": ("protobuf", "foxglove.CompressedImage", "protobuf"),
    f"/captions/{CAM}": ("protobuf", "foxglove.Log", "protobuf"),
    f"/events/{CAM}": ("protobuf", "foxglove.Log", "protobuf"),
    f"/truth/{CAM}": ("protobuf", "foxglove.Log", "protobuf"),
    f"/segments/{CAM}": ("json", "perception.Segment", "jsonschema"),
    "/stats/encoder": ("json", "perception.Stats", "jsonschema"),
}


def read(path):
    """(channels by topic, schemas by id, messages as (topic, log_time, data) in log-time order)."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        messages = [(ch.topic, m.log_time, m.data) for _s, ch, m in reader.iter_messages(log_time_order=True)]
    return {c.topic: c for c in summary.channels.values()}, summary.schemas, messages


async def test_export_writes_foxglove_schemas_the_app_shows_without_a_layout(session_recording, tmp_path):
    out = tmp_path / "foxglove.mcap"
    proc = await perception_child("info", str(session_recording.path), "--export", "foxglove", str(out))
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert f"to {out}" in stdout.decode()

    channels, schemas, messages = read(out)
    assert set(channels) == set(EXPECTED), sorted(channels)
    for topic, (encoding, schema_name, schema_encoding) in EXPECTED.items():
        ch = channels[topic]
        schema = schemas[ch.schema_id]
        assert (ch.message_encoding, schema.name, schema.encoding) == (encoding, schema_name, schema_encoding), topic
        assert schema.data, f"{topic}: empty schema"  # a FileDescriptorSet / a JSON schema the app reads
    assert b"CompressedImage" in schemas[channels[f"/frames/{CAM}"].schema_id].data

    by_topic: dict[str, list] = {}
    for topic, log_time, data in messages:
        by_topic.setdefault(topic, []).append((log_time, data))

    # every frame, the recorded pixels exactly (PNG), stamped with its capture time
    frames = by_topic[f"/frames/{CAM}"]
    assert len(frames) == len(session_recording.frames)
    for (log_time, data), frame in zip(frames[::30], session_recording.frames[::30]):
        f = protobuf_fields(data)
        assert f[3] == [b"png"] and f[4] == [CAM.encode()]  # small frames go lossless
        stamp = protobuf_fields(f[1][0])
        assert stamp[1][0] * 10**9 + stamp.get(2, [0])[0] == frame.t_capture_ns
        np.testing.assert_array_equal(decode_image(f[2][0], "png"), frame.image)
        assert log_time == frame.t_capture_ns + 1000  # the recorder's log time

    # captions as Log messages: the text, INFO (2), from the decoder
    logs = [protobuf_fields(d) for _t, d in by_topic[f"/captions/{CAM}"]]
    assert [f[3][0].decode() for f in logs] == CAPTIONS
    assert all(f[2] == [2] and f[4] == [b"decoder"] for f in logs)

    # events: two segments (INFO) and the watch crossing, WARNING (3) on, INFO off
    events = [
        (f.get(2, [0])[0], f[3][0].decode()) for f in (protobuf_fields(d) for _t, d in by_topic[f"/events/{CAM}"])
    ]
    assert [lvl for lvl, text in events if text.startswith("watch")] == [3, 2]
    assert sum(text.startswith("segment") for _l, text in events) == 2
    assert any(WATCH in text for _l, text in events)

    # segments and stats: plottable JSON, counter names a Plot path can address
    segments = [json.loads(d) for _t, d in by_topic[f"/segments/{CAM}"]]
    assert [(s["start_s"], s["end_s"]) for s in segments] == [(0.0, 1.5), (1.5, 3.0)]
    stats = [json.loads(d) for _t, d in by_topic["/stats/encoder"]]
    assert stats[-1]["counters"] == {"windows": 8.0, "sub_superseded": 2.0, "ready": 1.0}


def test_export_keeps_every_frame_or_a_rate(session_recording, tmp_path):
    every = export_foxglove(session_recording.path, tmp_path / "all.mcap")
    assert every["frames_sent"] == len(session_recording.frames)
    assert every["ignored"] == 2  # the decode requests: nothing to show
    five = export_foxglove(session_recording.path, tmp_path / "five.mcap", max_fps=5)
    # 3 s at 5 fps, counted on the frames' capture times (a slot is taken up to a quarter slot early)
    assert 15 <= five["frames_sent"] <= 16
