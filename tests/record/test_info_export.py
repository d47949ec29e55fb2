"""`perception info` (topics, counts, duration, rates, gaps; --json) and the Foxglove JSON export."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
from mcap.reader import make_reader

from benchmarks.bus.messages import Blob, Text
from bus.codec import encode
from bus.mcap_export import export_json
from bus.mcap_info import describe
from bus.mcapfile import BusMcapWriter, pack_message
from tests.record.conftest import perception_run, sample_blob, write_synthetic


def write_with_gaps(path):
    """demo/a: seqs 0..9 from one source; demo/g: seqs 0, 1, 4, 8 (2 + 3 = 5 missing), 10 Hz."""
    writer = BusMcapWriter(path)
    t0 = time.time_ns()
    for topic, seqs in (("demo/a", range(10)), ("demo/g", (0, 1, 4, 8))):
        for seq in seqs:
            t = t0 + seq * 100_000_000
            parts = encode(topic, Text(text=str(seq)), seq=seq, src="s1", t_ns=t)
            writer.write(topic, "Text", 1, seq=seq, t_pub=t, t_log=t + 500, data=pack_message(parts[1], parts[2:]))
    writer.close()


async def test_info_cli_reports_topics_counts_rates_and_gaps(runtime_dir, config_file):
    path = runtime_dir / "g.mcap"
    write_with_gaps(path)
    code, out, err = await perception_run("info", str(path), "--json", "--config", str(config_file))
    assert code == 0, err
    info = json.loads(out)
    assert info["complete"] is True and info["messages"] == 14
    assert abs(info["duration_s"] - 0.9) < 1e-6
    topics = {t["topic"]: t for t in info["topics"]}
    assert topics["demo/a"]["count"] == 10 and topics["demo/a"]["gaps"] == 0
    assert abs(topics["demo/a"]["rate_hz"] - 10.0) < 1e-6
    assert topics["demo/g"]["count"] == 4 and topics["demo/g"]["gaps"] == 5
    text = describe(path).render()
    assert "demo/g" in text and "5 missing seq(s)" in text and "complete" in text


def test_export_json_is_foxglove_readable(runtime_dir):
    src = runtime_dir / "s.mcap"
    dst = runtime_dir / "s.json.mcap"
    write_synthetic(src, n=6)  # demo/a: Blobs (images and a float vector), other/b: Text
    counts = export_json(src, dst)
    assert counts == {"demo/a": 6, "other/b": 6, "demo/a/image": 4}  # 4 of the 6 blobs are uint8 images
    seen = {}
    with open(dst, "rb") as f:
        reader = make_reader(f)
        for schema, channel, message in reader.iter_messages():
            assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
            json.loads(schema.data)  # a valid JSON schema document
            record = json.loads(message.data)
            seen.setdefault(channel.topic, []).append(record)
            if channel.topic == "demo/a/image":
                assert schema.name == "foxglove.RawImage"
                pixels = np.frombuffer(base64.b64decode(record["data"]), np.uint8)
                expected = sample_blob(message.sequence).data
                assert record["encoding"] == "rgb8" and (record["height"], record["width"]) == expected.shape[:2]
                assert pixels.tobytes() == expected.tobytes()
            elif channel.topic == "demo/a":
                data = record["body"]["data"]
                expected = sample_blob(record["seq"]).data
                assert data["shape"] == list(expected.shape) and data["dtype"] == expected.dtype.name
                assert abs(data["mean"] - float(expected.mean())) < 1e-6
                if expected.ndim == 1:  # small vectors carry their values (plottable)
                    assert np.allclose(data["values"], expected)
                else:  # images are summarised here, never inlined
                    assert "values" not in data
    assert [r["body"]["text"] for r in seen["other/b"]] == [f"t{i}" for i in range(6)]


def test_info_on_empty_and_blob_only_files(runtime_dir):
    empty = runtime_dir / "empty.mcap"
    BusMcapWriter(empty).close()
    info = describe(empty)
    assert info.complete and info.messages == 0 and info.duration_s == 0.0

    one = runtime_dir / "one.mcap"
    w = BusMcapWriter(one)
    parts = encode("x/y", Blob(data=np.zeros(3, np.float32)), seq=7, src="s", t_ns=1)
    w.write("x/y", "Blob", 1, seq=7, t_pub=1, t_log=2, data=pack_message(parts[1], parts[2:]))
    w.close()
    info = describe(one)
    assert [(t.topic, t.count, t.rate_hz) for t in info.topics] == [("x/y", 1, 0.0)]
