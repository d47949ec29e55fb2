"""The stored message layout: msgpack-only decoding, verbatim round trip, bad input rejected clearly."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader

from bus.codec import decode, encode
from bus.mcapfile import RecordingError, iter_messages, pack_message, read_header, unpack_message
from tests.record.conftest import sample_blob, write_synthetic


@settings(max_examples=60, deadline=None)
@given(
    header=st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20), max_size=6),
    sizes=st.lists(st.sampled_from([0, 1, 255, 256, 65535, 65536, 70000]), max_size=4),
)
def test_pack_unpack_round_trip_keeps_bytes(header, sizes):
    header_b = msgpack.packb(header, use_bin_type=True)
    buffers = [bytes((i * 7 + k) % 256 for k in range(n)) for i, n in enumerate(sizes)]
    data = pack_message(header_b, buffers)
    got_header, got_buffers = unpack_message(data)
    assert got_header == header_b
    assert [bytes(b) for b in got_buffers] == buffers
    # a plain msgpack reader sees [header_map, bin, bin, ...]
    assert msgpack.unpackb(data, raw=False) == [header, *buffers]


@pytest.mark.parametrize("i", [0, 1, 2], ids=["uint8-image", "float32-vector", "bin32-image"])
def test_stored_message_decodes_back_through_the_bus_codec(i):
    msg = sample_blob(i)
    parts = encode("demo/x", msg, seq=5, src="s", t_ns=123)
    header, buffers = unpack_message(pack_message(parts[1], parts[2:]))
    env = decode([b"demo/x", header, *buffers])
    assert env.seq == 5 and env.msg.label == msg.label
    assert env.msg.data.dtype == msg.data.dtype and env.msg.data.tobytes() == msg.data.tobytes()


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([]), b"\x92\x80\xc6\x00\x00\x10\x00ab", b"\x92\x80\x01"],
    ids=["empty", "reserved-byte", "not-array", "empty-array", "bin-past-end", "buffer-not-bin"],
)
def test_unpack_rejects_garbage_with_recording_error(data):
    with pytest.raises(RecordingError):
        unpack_message(data)


def test_official_reader_reads_every_message_with_only_msgpack(tmp_path):
    path = tmp_path / "s.mcap"
    sent = write_synthetic(path, n=12)
    got = []
    with open(path, "rb") as f:
        reader = make_reader(f)
        for _schema, channel, message in reader.iter_messages(log_time_order=True):
            assert channel.message_encoding == "msgpack"
            header, *buffers = msgpack.unpackb(message.data, raw=False)
            assert header["seq"] == message.sequence and header["t"] == message.publish_time
            assert channel.metadata["type"] == header["type"] and channel.metadata["v"] == str(header["v"])
            body = header["body"]
            if header["type"] == "Blob":
                ref = body["data"]
                arr = np.frombuffer(buffers[ref["nd"]], dtype=ref["dtype"]).reshape(ref["shape"])
                assert arr.tobytes() == sample_blob(header["seq"]).data.tobytes()
            else:
                assert body["text"] == f"t{header['seq']}"
            got.append((channel.topic, header["seq"]))
    assert sorted(got) == sorted(sent)


def test_iter_messages_filters_by_prefix_and_start(tmp_path):
    path = tmp_path / "s.mcap"
    write_synthetic(path, n=10, interval_ms=100)
    assert {m.topic for m in iter_messages(path, ["demo/"])} == {"demo/a"}
    first = next(iter_messages(path))
    later = list(iter_messages(path, ["other/"], start_ns=first.log_time + 450 * 10**6))
    assert [m.seq for m in later] == [5, 6, 7, 8, 9]
    assert read_header(later[0].header)["body"] == {"text": "t5"}


def test_missing_and_non_mcap_files_are_clear_errors(tmp_path):
    with pytest.raises(RecordingError, match="not found"):
        list(iter_messages(tmp_path / "nope.mcap"))
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is not mcap" * 10)
    with pytest.raises(RecordingError, match="incomplete or damaged"):
        list(iter_messages(junk))
