"""Codec: round trips of every message type and array shape; every malformed input is a DecodeError."""

from __future__ import annotations

from typing import ClassVar

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bus.messages import Blob, Text
from bus.codec import WIRE_DTYPES, DecodeError, EncodeError, decode, encode, peek
from bus.message import Heartbeat, Message, Stats, register, registered_types


@register
class Sample(Message):
    """A test type with two array fields, one optional, and a nested value."""

    TYPE: ClassVar[str] = "test.Sample"
    VERSION: ClassVar[int] = 2
    name: str
    values: list[float] = []
    meta: dict[str, int] = {}
    image: np.ndarray
    mask: np.ndarray | None = None


def roundtrip(msg: Message, topic: str = "t/x"):
    parts = encode(topic, msg, seq=7, src="me", t_ns=123)
    # decode from bytes, as a receiver (or a recording) would see them
    return decode([bytes(p) for p in parts]), parts


ARRAYS = {
    "0d": np.array(3.25, dtype=np.float32),
    "empty": np.zeros((0, 4), dtype=np.int16),
    "empty1d": np.array([], dtype=np.uint8),
    "noncontig": np.arange(48, dtype=np.int64).reshape(6, 8)[::2, 1::3],
    "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    "bigendian": np.arange(5, dtype=">i4"),
    "bool": np.array([True, False, True]),
    "frame": np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8),
    "complex": np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
}


@pytest.mark.parametrize("arr", ARRAYS.values(), ids=ARRAYS.keys())
def test_array_roundtrip(arr):
    env, _ = roundtrip(Blob(label="x", data=arr))
    out = env.msg.data
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype.newbyteorder("=") or out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)
    assert (env.topic, env.type, env.v, env.seq, env.src, env.t) == ("t/x", "Blob", 1, 7, "me", 123)


def test_every_registered_type_roundtrips():
    samples = {
        "Stats": Stats(node="n", counters={"a": 1.0, "b": 2.5}),
        "Text": Text(text="héllo"),
        "Heartbeat": Heartbeat(node="n", uptime_s=3.0),
        "Blob": Blob(label="b", t_mono_ns=5, data=np.ones(3)),
        "test.Sample": Sample(name="s", values=[1.0, 2.0], meta={"k": 1}, image=np.eye(3), mask=np.zeros(2, bool)),
    }
    for type_name, cls in registered_types().items():
        if type_name not in samples:
            continue  # types registered by other packages are tested there
        msg = samples[type_name]
        assert isinstance(msg, cls)
        env, _ = roundtrip(msg)
        assert type(env.msg) is cls
        for field in cls.model_fields:
            a, b = getattr(msg, field), getattr(env.msg, field)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b
    assert {"Stats", "Text", "Heartbeat", "Blob"} <= set(registered_types())


def test_optional_array_none_and_wire_layout():
    env, parts = roundtrip(Sample(name="s", image=np.zeros((2, 2), np.uint8)))
    assert env.msg.mask is None
    assert len(parts) == 3  # topic, header, one buffer
    header = msgpack.unpackb(bytes(parts[1]))
    assert header["body"]["image"] == {"nd": 0, "dtype": "uint8", "shape": [2, 2]}
    assert set(header) == {"type", "v", "seq", "src", "t", "body"}


def test_arrays_are_sent_without_copy():
    arr = np.arange(1 << 16, dtype=np.uint8)
    parts = encode("frames/x", Blob(data=arr), seq=0, src="s", t_ns=0)
    assert isinstance(parts[2], memoryview)
    assert np.shares_memory(np.frombuffer(parts[2], np.uint8), arr)


def test_peek_reads_header_only():
    parts = encode("t/x", Text(text="a"), seq=3, src="p", t_ns=9)
    h = peek(parts)
    assert (h.topic, h.type, h.v, h.seq, h.src, h.t) == ("t/x", "Text", 1, 3, "p", 9)


def test_unknown_fields_from_a_newer_minor_are_dropped():
    parts = encode("t/x", Text(text="a"), seq=0, src="p", t_ns=0)
    header = msgpack.unpackb(bytes(parts[1]))
    header["body"]["added_later"] = 1
    env = decode([parts[0], msgpack.packb(header)])
    assert env.msg.text == "a"


def _good() -> list[bytes]:
    return [bytes(p) for p in encode("t/x", Blob(data=np.zeros((2, 3), np.float32)), seq=0, src="p", t_ns=0)]


def _header(parts):
    return msgpack.unpackb(parts[1])


def _with_header(parts, **changes):
    h = _header(parts)
    for k, v in changes.items():
        if k.startswith("body_"):
            h["body"][k[5:]] = v
        else:
            h[k] = v
    return [parts[0], msgpack.packb(h), *parts[2:]]


BAD = {
    "one_part": ([b"t/x"], "bad_part_count"),
    "missing_buffer": (_good()[:2], "bad_part_count"),
    "extra_buffer": (_good() + [b"x"], "bad_part_count"),
    "topic_not_utf8": ([b"\xff\xfe", *_good()[1:]], "bad_topic"),
    "garbage_header": ([b"t/x", b"\xc1\xc1garbage"], "bad_header"),
    "header_not_map": ([b"t/x", msgpack.packb([1, 2])], "bad_header"),
    "seq_is_str": (_with_header(_good(), seq="0"), "bad_header"),
    "seq_is_bool": (_with_header(_good(), seq=True), "bad_header"),
    "body_not_map": (_with_header(_good(), body=[1]), "bad_header"),
    "unknown_type": (_with_header(_good(), type="Nope"), "unknown_type"),
    "newer_version": (_with_header(_good(), v=2), "newer_version"),
    "wrong_field_type": (_with_header(_good(), body_label=5), "invalid_body"),
    "buffer_too_short": ([*_good()[:2], b"\x00" * 5], "bad_buffer"),
    "bad_dtype": (_with_header(_good(), body_data={"nd": 0, "dtype": "object", "shape": [2, 3]}), "bad_buffer"),
    "negative_shape": (_with_header(_good(), body_data={"nd": 0, "dtype": "float32", "shape": [-2, -3]}), "bad_buffer"),
    "bad_index": (_with_header(_good(), body_data={"nd": -1, "dtype": "float32", "shape": [2, 3]}), "bad_buffer"),
    "index_past_parts": (
        _with_header(_good(), body_data={"nd": 4, "dtype": "float32", "shape": [2, 3]}),
        "bad_part_count",
    ),
    "ref_not_map": (_with_header(_good(), body_data=[1, 2]), "bad_buffer"),
}


@pytest.mark.parametrize("parts,reason", BAD.values(), ids=BAD.keys())
def test_bad_input_is_a_decode_error_with_reason(parts, reason):
    with pytest.raises(DecodeError) as err:
        decode(parts)
    assert err.value.reason == reason


def test_oversize_is_rejected():
    parts = encode("t/x", Blob(data=np.zeros(5000, np.uint8)), seq=0, src="p", t_ns=0)
    with pytest.raises(DecodeError) as err:
        decode(parts, max_size=4096)
    assert err.value.reason == "oversize"
    assert decode(parts, max_size=8192).msg.data.size == 5000


def test_encode_refuses_unregistered_types_and_object_arrays():
    class Loose(Message):
        TYPE: ClassVar[str] = "test.Loose"
        x: int = 0

    with pytest.raises(EncodeError, match="not a registered"):
        encode("t", Loose(), seq=0, src="s", t_ns=0)
    with pytest.raises(EncodeError, match="dtype"):
        encode("t", Blob(data=np.array(["a", "b"], dtype=object)), seq=0, src="s", t_ns=0)


def test_duplicate_type_names_are_refused():
    with pytest.raises(TypeError, match="already registered"):

        @register
        class OtherText(Message):
            TYPE: ClassVar[str] = "Text"
            text: str


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=48), min_size=0, max_size=5))
def test_random_bytes_never_raise_anything_but_decode_error(parts):
    try:
        decode(parts, max_size=1 << 20)
    except DecodeError:
        pass
    try:
        peek(parts)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "v", "seq", "src", "t", "body", "x"]),
        st.one_of(
            st.integers(-3, 3),
            st.text(max_size=5),
            st.none(),
            st.booleans(),
            st.sampled_from(["Blob", "Text"]),
            st.dictionaries(
                st.sampled_from(["data", "label", "text"]),
                st.one_of(
                    st.integers(-(2**63), 2**64 - 1),
                    st.text(max_size=3),
                    st.fixed_dictionaries(
                        {
                            "nd": st.integers(-1, 2),
                            "dtype": st.sampled_from(sorted(WIRE_DTYPES) + ["x"]),
                            "shape": st.lists(st.integers(-1, 3), max_size=3),
                        }
                    ),
                ),
            ),
        ),
        max_size=7,
    ),
    st.lists(st.binary(max_size=16), max_size=2),
)
def test_structured_garbage_never_raises_anything_but_decode_error(header, buffers):
    try:
        decode([b"t/x", msgpack.packb(header), *buffers])
    except DecodeError:
        pass


def test_a_failed_encode_leaves_the_reused_packer_clean():
    """encode reuses one msgpack Packer per thread: a value it cannot pack must not corrupt the next."""
    with pytest.raises(EncodeError):
        encode("t", Stats.model_construct(node="n", counters={"x": object()}), seq=0, src="s", t_ns=0)
    env = decode(encode("t", Blob(label="ok", data=np.arange(3, dtype=np.int16)), seq=1, src="s", t_ns=0))
    assert env.msg.label == "ok" and env.msg.data.tolist() == [0, 1, 2] and env.seq == 1
