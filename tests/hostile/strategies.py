"""Hypothesis strategies for hostile bus input, and the seed corpus of defects found so far.

Pub/sub: every strategy yields a `Hostile(cls, parts)`: a labelled multipart built from a *valid* envelope
(`bus.codec.encode` of a real message: Blob, Text, Stats, Event, Embedding, Caption, Frame, SkillEvent ...)
with one structural mutation, so that it gets past the early checks and reaches the deep ones. The
header and body are rebuilt as raw msgpack (`Wire`), so a mutation can put there what no Packer writes:
invalid UTF-8 in a str, duplicate or non-string keys, 100 000-deep nesting, lengths that claim 4 GiB.
The label (`cls`) is what the campaign counts by; whether a message is rejected is decided by the
codec itself (`bus.codec.decode`), never guessed here - some mutations produce a valid message.

RPC: `rpc_requests(methods)` yields `RpcCase(cls, frames, expect_reply)`: the frames a DEALER sends
([request_id, body, ...]) and whether the server must answer (everything but a request whose time
budget is already spent, which the server drops unexecuted by design).

The seed corpus (`seed_corpus`, `rpc_seed_corpus`) keeps every defect found so far as a named case: the
in-process tests run each one, the campaign sends each one through the live system.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import skills.messages  # noqa: F401  registers SkillEvent / Alert with the codec
from benchmarks.bus.messages import Blob, Text
from bus.codec import MAX_NDIM, WIRE_DTYPES, encode
from bus.config import BusConfig
from bus.message import Heartbeat, Stats
from perception.messages import Caption, DecodeRequest, Embedding, Event, Frame, LabelScore
from skills.messages import SkillEvent

MiB = 1 << 20

# -- raw msgpack ------------------------------------------------------------------------------------------


def mp(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def mp_str(raw: bytes) -> bytes:
    """A msgpack str holding `raw` verbatim (invalid UTF-8, encoded surrogates: what no Packer writes)."""
    n = len(raw)
    if n < 32:
        return bytes([0xA0 | n]) + raw
    if n < 1 << 8:
        return b"\xd9" + struct.pack(">B", n) + raw
    if n < 1 << 16:
        return b"\xda" + struct.pack(">H", n) + raw
    return b"\xdb" + struct.pack(">I", n) + raw


def mp_map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def mp_array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def mp_map(items: list[tuple[bytes, bytes]]) -> bytes:
    """A map of already packed (key, value) pairs: duplicate and non-string keys allowed."""
    return mp_map_header(len(items)) + b"".join(k + v for k, v in items)


def nested(depth: int, kind: str = "list") -> bytes:
    """A packed value nested `depth` deep (built as bytes: msgpack's Packer stops at 512)."""
    if kind == "list":
        return b"\x91" * depth + b"\x90"
    if kind == "map":
        return b"\x81\xa1k" * depth + b"\x80"
    return b"\x91\x81\xa1k" * (depth // 2) + b"\x90"  # alternating


# Claimed lengths far beyond the bytes that follow: an unpacker that trusted them would allocate GiBs.
CLAIMS = [
    b"\xdd\xff\xff\xff\xff",  # array32 of 2**32-1
    b"\xdf\xff\xff\xff\xff",  # map32 of 2**32-1
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
    b"\xc9\xff\xff\xff\xff\x01",  # ext32 of 4 GiB
    b"\xdc\xff\xff" + b"\xc0",  # array16 of 65535 holding one nil
    b"\xda\x10\x00abc",  # str16 of 4096 holding 3 bytes
]

INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xe2\x28\xa1",
    b"\xf0\x28\x8c\xbc",
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate (U+D800)
    b"\xed\xbf\xbf\xed\xa0\x80",  # a surrogate pair spelt as two code points
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong '/'
    b"caf\xe9",  # latin-1
]


# -- the envelope as raw msgpack --------------------------------------------------------------------------


@dataclass
class Wire:
    """One bus message as packed pieces that mutations edit: topic, header pairs, body pairs, buffers."""

    topic: bytes
    head: list[tuple[bytes, bytes]]  # packed (key, value) pairs of the header, 'body' excluded
    body: list[tuple[bytes, bytes]]  # packed (field, value) pairs of the body
    buffers: list[bytes]
    type_name: str = ""
    array_fields: tuple[str, ...] = ()

    @classmethod
    def of(cls, topic: str, msg: Any, *, seq: int = 0, src: str = "fuzzer", t_ns: int = 0) -> Wire:
        parts = encode(topic, msg, seq=seq, src=src, t_ns=t_ns)
        header = msgpack.unpackb(bytes(parts[1]), raw=False)
        body = header.pop("body")
        arrays = tuple(
            k
            for k, v in body.items()
            if type(v) is dict and set(v) == {"nd", "dtype", "shape"} and k in type(msg).ARRAY_FIELDS
        )
        return cls(
            bytes(parts[0]),
            [(mp(k), mp(v)) for k, v in header.items()],
            [(mp(k), mp(v)) for k, v in body.items()],
            [bytes(p) for p in parts[2:]],
            msg.TYPE,
            arrays,
        )

    def header_bytes(self) -> bytes:
        return mp_map([*self.head, (mp("body"), mp_map(self.body))])

    def parts(self) -> list[bytes]:
        return [self.topic, self.header_bytes(), *self.buffers]

    @staticmethod
    def _set(pairs: list[tuple[bytes, bytes]], key: str, packed: bytes) -> None:
        k = mp(key)
        for i, (kk, _) in enumerate(pairs):
            if kk == k:
                pairs[i] = (k, packed)
                return
        pairs.append((k, packed))

    def set_head(self, key: str, packed: bytes) -> Wire:
        self._set(self.head, key, packed)
        return self

    def drop_head(self, key: str) -> Wire:
        self.head = [(k, v) for k, v in self.head if k != mp(key)]
        return self

    def set_body(self, name: str, packed: bytes) -> Wire:
        self._set(self.body, name, packed)
        return self

    def drop_body(self, name: str) -> Wire:
        self.body = [(k, v) for k, v in self.body if k != mp(name)]
        return self

    def body_value(self, name: str) -> Any:
        k = mp(name)
        return next(msgpack.unpackb(v, raw=False) for kk, v in self.body if kk == k)

    def body_names(self) -> list[str]:
        return [msgpack.unpackb(k, raw=False) for k, _ in self.body]


@dataclass
class Hostile:
    """A labelled multipart: `cls` names the mutation class (what the campaign counts by)."""

    cls: str
    parts: list[bytes]

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.parts)


# -- valid messages ---------------------------------------------------------------------------------------

WIRE = sorted(WIRE_DTYPES)
ids = st.integers(0, 2**62 - 1)
ns = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(width=64)
short_text = st.text(max_size=24)
# never the campaign's own cameras (cam0, valid-events): a frame from anyone for cam0 with a lower index is a
# camera restart by design, and would reset the window the valid `ask` calls need
cam_names = st.sampled_from(["hostile", "c1", "x"]) | st.text(min_size=1, max_size=16).filter(
    lambda s: s not in ("cam0", "valid-events")
)


def _dtypes() -> st.SearchStrategy[np.dtype]:
    """Every wire dtype, in either byte order (a big-endian array is swapped once on encode)."""
    base = st.sampled_from(WIRE).map(np.dtype)
    return base | base.map(lambda d: d.newbyteorder(">"))


def arrays(max_dims: int = 4, max_side: int = 4) -> st.SearchStrategy[np.ndarray]:
    """Small arrays of every wire dtype, empty ones and (transposed) non-contiguous ones included."""
    plain = hnp.arrays(_dtypes(), hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    empty_rank = st.integers(1, MAX_NDIM).map(lambda n: np.zeros((0,) * n, np.uint8))  # zero-size, many dims
    return plain | plain.map(lambda a: a.T) | empty_rank


labels = st.lists(st.builds(LabelScore, label=short_text, score=floats), max_size=4)
msgpack_leaves = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | floats | short_text | st.binary(max_size=16)
)
msgpack_values = st.recursive(
    msgpack_leaves,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(short_text, kids, max_size=4),
    max_leaves=12,
)

valid_messages = st.one_of(
    st.builds(Blob, label=short_text, t_mono_ns=ns, data=arrays()),
    st.builds(Text, text=st.text(max_size=200)),
    st.builds(Stats, node=short_text, counters=st.dictionaries(short_text, floats, max_size=6)),
    st.builds(Heartbeat, node=short_text, uptime_s=floats),
    st.builds(
        Event,
        cam=cam_names,
        kind=st.sampled_from(["segment", "watch"]),
        segment_id=ids,
        start_ns=ns,
        end_ns=ns,
        start_s=floats,
        end_s=floats,
        labels=labels,
        watch=st.none() | short_text,
        active=st.none() | st.booleans(),
        t_capture_ns=ns,
        embedding=st.none() | hnp.arrays(np.float32, st.integers(0, 16)),
    ),
    st.builds(
        Embedding,
        cam=cam_names,
        window=ids,
        start_ns=ns,
        end_ns=ns,
        start_s=floats,
        end_s=floats,
        model_id=short_text,
        t_capture_ns=ns,
        t_done_ns=ns,
        embedding=arrays(max_dims=2, max_side=16),
    ),
    st.builds(
        Caption,
        cam=cam_names,
        segment_id=ids,
        text=st.text(max_size=80),
        start_ns=ns,
        end_ns=ns,
        start_s=floats,
        end_s=floats,
        t_capture_ns=ns,
        latency_ms=floats,
    ),
    st.builds(
        Frame,
        cam=cam_names,
        index=ids,
        t_capture_ns=ns,
        stream_s=floats,
        image=hnp.arrays(np.uint8, st.tuples(st.integers(0, 8), st.integers(0, 8), st.just(3))),
    ),
    st.builds(
        DecodeRequest,
        cam=cam_names,
        segment_id=ids,
        start_ns=ns,
        end_ns=ns,
        t_capture_ns=ns,
        embedding=hnp.arrays(np.float32, st.integers(0, 16)),
    ),
    st.builds(
        SkillEvent,
        skill=short_text,
        name=short_text,
        text=short_text,
        data=st.dictionaries(short_text, msgpack_values, max_size=4),
    ),
)

_TOPIC_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789/_-."


def topics(prefix: str) -> st.SearchStrategy[str]:
    return st.text(alphabet=_TOPIC_CHARS, max_size=16).map(lambda s: prefix + s)


def wires(prefix: str = "fuzz/", messages: st.SearchStrategy = valid_messages) -> st.SearchStrategy[Wire]:
    """Valid envelopes: any topic under `prefix`, any message, any seq / src / t the codec allows."""
    return st.builds(
        lambda topic, msg, seq, src, t: Wire.of(topic, msg, seq=seq, src=src, t_ns=t),
        topics(prefix),
        messages,
        st.integers(0, 2**64 - 1),
        st.text(max_size=40),
        st.integers(0, 2**63 - 1),
    )  # t: ns since the epoch; the codec refuses the rest


def array_wires(prefix: str = "fuzz/") -> st.SearchStrategy[Wire]:
    """Valid envelopes that carry at least one array buffer."""
    with_arrays = st.one_of(
        st.builds(Blob, label=short_text, data=arrays()),
        st.builds(
            Embedding,
            cam=cam_names,
            window=ids,
            start_ns=ns,
            end_ns=ns,
            model_id=short_text,
            t_capture_ns=ns,
            embedding=hnp.arrays(np.float32, st.integers(0, 16)),
        ),
        st.builds(
            Event,
            cam=cam_names,
            kind=st.just("segment"),
            segment_id=ids,
            start_ns=ns,
            end_ns=ns,
            embedding=hnp.arrays(np.float32, st.integers(0, 16)),
        ),
        st.builds(
            Frame,
            cam=cam_names,
            index=ids,
            t_capture_ns=ns,
            image=hnp.arrays(np.uint8, st.tuples(st.integers(0, 4), st.integers(0, 4), st.just(3))),
        ),
    )
    return wires(prefix, with_arrays)


# -- hostile values ---------------------------------------------------------------------------------------

HUGE_INTS = [2**64 - 1, 2**63, 2**63 - 1, 2**62, 2**62 - 1, 2**32, 2**31, -1, -(2**31), -(2**63)]
HOSTILE_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    *HUGE_INTS,
    0.0,
    -0.0,
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "\x00",
    "\U0010ffff",
    b"",
    b"\x00\xff",
    [],
    [None],
    {},
    {"k": 1},
    {"": {"": {}}},
    msgpack.ExtType(1, b"x"),
    msgpack.ExtType(127, b""),
    msgpack.ExtType(0, b"\x00" * 16),
    msgpack.Timestamp(0),
    msgpack.Timestamp(2**34, 999_999_999),
    msgpack.Timestamp(-(2**63), 0),
]
hostile_scalars = (
    st.sampled_from(HOSTILE_SCALARS)
    | st.integers(-(2**63), 2**64 - 1)
    | floats
    | st.text(max_size=20)
    | st.binary(max_size=20)
)


def lengths(max_len: int) -> st.SearchStrategy[int]:
    """Sizes at and around the interesting boundaries, up to `max_len`."""
    marks = [0, 1, 2, 7, 8, 31, 32, 255, 256, 257, 1023, 1024, 4096, 65535, 65536, MiB, 5 * MiB]
    return st.sampled_from([m for m in marks if m <= max_len]) | st.integers(0, min(max_len, 300))


def big_bytes(max_len: int) -> st.SearchStrategy[bytes]:
    return st.builds(lambda n, b: bytes([b]) * n, lengths(max_len), st.integers(0, 255))


def depths(max_len: int) -> st.SearchStrategy[int]:
    marks = [31, 32, 33, 64, 511, 512, 600, 1023, 1024, 1025, 5000, 100_000]
    return st.sampled_from([d for d in marks if 4 * d <= max_len]) | st.integers(1, 40)


def raw_values(max_len: int) -> st.SearchStrategy[bytes]:
    """Packed values no Packer writes: invalid UTF-8 strs, deep nesting, lying length prefixes."""
    return st.one_of(
        st.sampled_from(INVALID_UTF8).map(mp_str),
        st.builds(lambda d, k: nested(d, k), depths(max_len), st.sampled_from(["list", "map", "mixed"])),
        st.sampled_from(CLAIMS),
        big_bytes(max_len).map(mp_str),
        big_bytes(max_len).map(mp),
    )


def packed_hostile(max_len: int) -> st.SearchStrategy[bytes]:
    return hostile_scalars.map(mp) | raw_values(max_len) | msgpack_values.map(mp)


# -- mutation classes -------------------------------------------------------------------------------------

DIMS = [0, 1, 2, 3, 2**31, 2**32, 2**62 - 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -1, -2, -(2**63)]
NON_INT_DIMS: list[Any] = [True, False, None, 1.0, math.nan, "1", b"1", [], {}, [1]]

# Every spelling of a numpy dtype we could think of: numpy's own names and type codes, each with every
# byte-order prefix, and the families that must never travel (object, strings, void, datetimes, records).
DTYPE_STRINGS: list[Any] = sorted(
    {
        *[k for k in np.sctypeDict if isinstance(k, str)],
        *np.typecodes["All"],
        *[o + c for o in "<>=|" for c in np.typecodes["All"]],
        *[
            o + n
            for o in "<>=|"
            for n in ("f4", "f8", "i2", "i4", "i8", "u2", "u4", "u8", "c8", "c16", "f2", "b1", "u1")
        ],
        "object",
        "O",
        "<U4",
        ">U4",
        "U",
        "U0",
        "S",
        "S3",
        "a5",
        "V",
        "V8",
        "V0",
        "M8",
        "M8[ns]",
        "<M8[ns]",
        "m8[s]",
        "datetime64[D]",
        "timedelta64",
        "float32",
        ">f4",
        "f4,i4",
        "(2,3)f4",
        "[('a', '<i4')]",
        "{'names': []}",
        "",
        " ",
        "uint8 ",
        " uint8",
        "UINT8",
        "Float32",
        "float31",
        "int128",
        "float256",
        "bfloat16",
        "str_",
        "uint8\x00",
        "b\xfcool",
    }
)
NON_STR_DTYPES: list[Any] = [None, 0, 1, 2**64 - 1, -1, 1.5, b"uint8", b"<f4", ["uint8"], {"dtype": "uint8"}, True]
ND_VALUES: list[Any] = [
    -1,
    0,
    1,
    2,
    63,
    64,
    2**31,
    2**63,
    2**64 - 1,
    -(2**63),
    True,
    False,
    None,
    0.0,
    "0",
    b"\x00",
    [0],
    {},
]


def _itemsize(dtype: Any) -> int | None:
    try:
        return np.dtype(dtype).itemsize if isinstance(dtype, str) else None
    except Exception:
        return None


@st.composite
def array_shape(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """Shape lists: dims 0, 1, 2**31, 2**63, 2**64-1, negative, non-int; ranks past numpy's 64."""
    w = draw(array_wires(prefix))
    name = draw(st.sampled_from(w.array_fields))
    ref = w.body_value(name)
    dims = st.sampled_from(DIMS) | st.integers(-(2**63), 2**64 - 1)
    shape = draw(
        st.one_of(
            st.lists(dims, max_size=8),
            st.integers(MAX_NDIM - 1, 100).map(lambda n: [0] * n),  # huge counts of (empty) dims
            st.integers(MAX_NDIM - 1, 100).map(lambda n: [1] * n),
            st.lists(dims, min_size=1, max_size=4).map(lambda s: [*s, 0]),  # an absurd dim hidden by a zero
            st.lists(st.sampled_from(NON_INT_DIMS) | dims, min_size=1, max_size=4),
            st.sampled_from([None, 0, "[]", b"", {}, {"0": 1}, 2**64 - 1]),  # not a list at all
        )
    )
    ref["shape"] = shape
    w.set_body(name, mp(ref))
    # usually make the buffer match what the shape claims, so only the shape check can refuse it
    if type(shape) is list and all(type(d) is int for d in shape) and draw(st.booleans()):
        size = math.prod(shape) * (_itemsize(ref["dtype"]) or 1)
        if 0 <= size <= max_len:
            w.buffers[ref["nd"]] = bytes(size)
    return Hostile("array_shape", w.parts())


@st.composite
def array_dtype(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """Every numpy dtype spelling incl. object, big-endian, unicode, void, datetime; and non-strings."""
    w = draw(array_wires(prefix))
    name = draw(st.sampled_from(w.array_fields))
    ref = w.body_value(name)
    dtype = draw(st.sampled_from(DTYPE_STRINGS) | st.sampled_from(NON_STR_DTYPES) | st.text(max_size=12))
    ref["dtype"] = dtype
    w.set_body(name, mp(ref))
    itemsize = _itemsize(dtype)
    if itemsize and draw(st.booleans()):  # a buffer whose length fits the dtype
        size = math.prod(ref["shape"]) * itemsize
        if size <= max_len:
            w.buffers[ref["nd"]] = bytes(size)
    return Hostile("array_dtype", w.parts())


@st.composite
def array_ref(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """The reference itself: nd out of range or not an int, keys missing or extra, not a map at all,
    an array reference where a scalar field belongs, two fields naming one buffer."""
    w = draw(array_wires(prefix))
    name = draw(st.sampled_from(w.array_fields))
    ref = w.body_value(name)
    how = draw(st.sampled_from(["nd", "drop_key", "extra_key", "not_map", "scalar_field", "shared"]))
    if how == "nd":
        ref["nd"] = draw(st.sampled_from(ND_VALUES) | st.integers(-(2**63), 2**64 - 1))
        w.set_body(name, mp(ref))
    elif how == "drop_key":
        del ref[draw(st.sampled_from(sorted(ref)))]
        w.set_body(name, mp(ref))
    elif how == "extra_key":
        ref[draw(st.sampled_from(["offset", "strides", "order", "nd2", ""]))] = draw(hostile_scalars)
        w.set_body(name, mp(ref))
    elif how == "not_map":
        w.set_body(name, draw(packed_hostile(max_len)))
    elif how == "scalar_field":
        other = [n for n in w.body_names() if n not in w.array_fields] or ["label"]
        w.set_body(draw(st.sampled_from(other)), mp(ref))
    else:  # a second (unknown) field naming the same buffer
        w.set_body(name + "_copy", mp(ref))
    return Hostile("array_ref", w.parts())


HEADER_KEYS = ["type", "v", "seq", "src", "t"]


@st.composite
def header_field(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """type / v / seq / src / t as bool, negative, 2**64-1, float, str, bytes, containers, ext types."""
    w = draw(wires(prefix))
    key = draw(st.sampled_from(HEADER_KEYS))
    from bus.message import registered_types  # every registered name: a type swap, not just garbage

    names = sorted(registered_types())
    value = draw(st.one_of(packed_hostile(max_len), st.sampled_from(names).map(mp), st.text(max_size=30).map(mp)))
    w.set_head(key, value)
    return Hostile("header_field", w.parts())


@st.composite
def header_keys(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """Keys missing, duplicated, extra, not strings; `body` missing or not a map."""
    w = draw(wires(prefix))
    how = draw(
        st.sampled_from(["drop", "duplicate", "extra", "non_str_key", "body_missing", "body_not_map", "body_twice"])
    )
    if how == "drop":
        w.drop_head(draw(st.sampled_from(HEADER_KEYS)))
        return Hostile("header_keys", w.parts())
    if how == "duplicate":
        key = draw(st.sampled_from(HEADER_KEYS))
        w.head.append((mp(key), draw(packed_hostile(max_len))))
    elif how == "extra":
        w.head.append((mp(draw(st.text(max_size=12))), draw(packed_hostile(max_len))))
    elif how == "non_str_key":
        key = draw(st.sampled_from([0, -1, 2**64 - 1, 1.5, True, None, b"type", (), msgpack.ExtType(1, b"")]))
        w.head.append((mp(list(key) if isinstance(key, tuple) else key), mp(1)))
    header = w.header_bytes()
    if how in ("body_missing", "body_not_map", "body_twice"):
        pairs = list(w.head)
        if how == "body_not_map":
            pairs.append((mp("body"), draw(packed_hostile(max_len))))
        elif how == "body_twice":
            pairs += [(mp("body"), mp_map(w.body)), (mp("body"), draw(packed_hostile(max_len)))]
        header = mp_map(pairs)
    return Hostile("header_keys", [w.topic, header, *w.buffers])


@st.composite
def body_value(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """Field values of the wrong type or out of range (ids of 2**64-1, nan times), unknown fields,
    missing fields, a newer major version, the body of one type under another's name."""
    w = draw(wires(prefix))
    how = draw(st.sampled_from(["value", "value", "unknown", "missing", "version", "type_swap"]))
    if how == "value" and w.body_names():
        w.set_body(draw(st.sampled_from(w.body_names())), draw(packed_hostile(max_len)))
    elif how == "unknown":
        w.set_body(draw(st.text(max_size=16)), draw(packed_hostile(max_len)))
    elif how == "missing" and w.body_names():
        w.drop_body(draw(st.sampled_from(w.body_names())))
    elif how == "version":
        w.set_head("v", mp(draw(st.sampled_from([0, 2, 3, 2**31, 2**63 - 1, 2**64 - 1]))))
    else:
        from bus.message import registered_types

        w.set_head("type", mp(draw(st.sampled_from(sorted(registered_types())))))
    return Hostile("body_value", w.parts())


@st.composite
def body_depth(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """A body field (dict-typed: Stats.counters, SkillEvent.data; or any other) nested up to 100 000 deep."""
    w = draw(
        wires(
            prefix,
            st.one_of(
                st.builds(SkillEvent, skill=short_text, name=short_text),
                st.builds(Stats, node=short_text),
                valid_messages,
            ),
        )
    )
    depth = draw(depths(max_len))
    kind = draw(st.sampled_from(["list", "map", "mixed"]))
    names = w.body_names() + ["deep"]
    name = draw(st.sampled_from(names))
    value = nested(depth, kind)
    if name in ("data", "counters") and kind == "map":  # under a key of the dict field itself
        value = mp_map([(mp("k"), value)])
    w.set_body(name, value)
    return Hostile("body_depth", w.parts())


@st.composite
def part_count(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """Buffers missing or extra, only a topic, nothing at all, and many (empty) parts."""
    w = draw(wires(prefix))
    parts = w.parts()
    how = draw(st.sampled_from(["none", "topic_only", "drop_buffers", "extra", "many_empty", "many_small"]))
    if how == "none":
        parts = []
    elif how == "topic_only":
        parts = parts[:1]
    elif how == "drop_buffers":
        parts = parts[: draw(st.integers(2, max(2, len(parts) - 1)))] if len(parts) > 2 else parts[:1]
    elif how == "extra":
        parts = parts + draw(st.lists(st.binary(max_size=16) | big_bytes(min(max_len, 4096)), min_size=1, max_size=8))
    else:
        n = draw(st.sampled_from([61, 62, 63, 64, 65, 66, 100, 1000]) | st.integers(3, 200))
        part = b"" if how == "many_empty" else b"\x00" * draw(st.integers(1, 64))
        parts = parts[:2] + [part] * n
    return Hostile("part_count", parts)


@st.composite
def topic(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """The topic part: invalid UTF-8, encoded surrogates, NULs, empty, up to `max_len` long."""
    w = draw(wires(prefix))
    suffix = draw(
        st.one_of(
            st.sampled_from(INVALID_UTF8),
            big_bytes(max_len),
            st.binary(max_size=40),
            st.just(b"\x00"),
            st.text(max_size=20).map(lambda s: s.encode()),
        )
    )
    w.topic = prefix.encode() + suffix
    return Hostile("topic", w.parts())


@st.composite
def src(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """The header's src: invalid UTF-8, surrogates, up to `max_len` long, not a string."""
    w = draw(wires(prefix))
    value = draw(
        st.one_of(
            st.sampled_from(INVALID_UTF8).map(mp_str),
            big_bytes(max_len).map(mp_str),
            st.text(min_size=250, max_size=270).map(mp),  # around max_src_bytes
            st.text(alphabet="\u00e9\u4e2d\U0001f600", min_size=60, max_size=300).map(mp),  # multi-byte chars
            hostile_scalars.map(mp),
        )
    )
    w.set_head("src", value)
    return Hostile("src", w.parts())


def mp_ext(code: int, data: bytes) -> bytes:
    """A packed ext of any code, the reserved negative ones included (msgpack.ExtType refuses those)."""
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    t = struct.pack(">b", code)
    if len(data) in fixed:
        return bytes([fixed[len(data)]]) + t + data
    if len(data) < 1 << 8:
        return b"\xc7" + struct.pack(">B", len(data)) + t + data
    return b"\xc8" + struct.pack(">H", len(data)) + t + data


# ext types: application codes, reserved negative codes, timestamps valid and of impossible lengths
EXT_PACKED = [mp_ext(c, d) for c in (-128, -2, -1, 0, 1, 42, 127) for d in (b"", b"\x00", b"\xff" * 3, b"\x00" * 8)]
EXT_PACKED += [
    mp(msgpack.Timestamp(0)),
    mp(msgpack.Timestamp(2**34 - 1, 999_999_999)),
    mp(msgpack.Timestamp(-1, 0)),
    mp_ext(-1, b"\xff" * 12),
]  # a timestamp96 of nanoseconds > 999999999


@st.composite
def ext(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """msgpack ext types (ExtType, Timestamp) as the header, a header field, a body field, an array ref."""
    w = draw(wires(prefix))
    value = draw(st.sampled_from(EXT_PACKED))
    where = draw(st.sampled_from(["header", "head_field", "body_field", "body", "ref"]))
    if where == "header":
        return Hostile("ext", [w.topic, value, *w.buffers])
    if where == "head_field":
        w.set_head(draw(st.sampled_from(HEADER_KEYS)), value)
    elif where == "body_field" and w.body_names():
        w.set_body(draw(st.sampled_from(w.body_names())), value)
    elif where == "ref" and w.array_fields:
        ref = w.body_value(w.array_fields[0])
        key = draw(st.sampled_from(sorted(ref)))
        w.set_body(w.array_fields[0], mp_map([(mp(k), value if k == key else mp(v)) for k, v in ref.items()]))
    else:
        return Hostile("ext", [w.topic, mp_map([*w.head, (mp("body"), value)]), *w.buffers])
    return Hostile("ext", w.parts())


@st.composite
def truncated(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """The header cut anywhere, extended with garbage or with one byte changed; a buffer cut or grown."""
    w = draw(wires(prefix))
    parts = w.parts()
    header = parts[1]
    how = draw(st.sampled_from(["cut", "cut", "extend", "flip", "buffer_cut", "buffer_grow"]))
    if how == "cut":
        parts[1] = header[: draw(st.integers(0, max(0, len(header) - 1)))]
    elif how == "extend":
        parts[1] = header + draw(st.binary(min_size=1, max_size=16))
    elif how == "flip":
        i = draw(st.integers(0, len(header) - 1))
        parts[1] = header[:i] + bytes([draw(st.integers(0, 255))]) + header[i + 1 :]
    elif how == "buffer_cut" and len(parts) > 2:
        parts[2] = parts[2][: draw(st.integers(0, max(0, len(parts[2]) - 1)))]
    elif len(parts) == 2:  # no buffer to grow: add one nobody references
        parts.append(draw(st.binary(max_size=9)))
    else:
        parts[2] = parts[2] + draw(st.binary(min_size=1, max_size=9))
    return Hostile("truncated", parts)


@st.composite
def garbage(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """A header that is random bytes, or msgpack of something that is not a header map."""
    header = draw(
        st.one_of(st.binary(max_size=64), msgpack_values.map(mp), hostile_scalars.map(mp), st.sampled_from(CLAIMS))
    )
    extra = draw(st.lists(st.binary(max_size=32), max_size=3))
    return Hostile("garbage", [draw(topics(prefix)).encode(), header, *extra])


@st.composite
def claims(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """Length prefixes that claim 4 GiB (arrays, maps, strs, bins, exts) in the header or a body field."""
    w = draw(wires(prefix))
    claim = draw(st.sampled_from(CLAIMS))
    if draw(st.booleans()):
        return Hostile("claims", [w.topic, mp_map_header(6) + mp("type") + claim, *w.buffers])
    name = draw(st.sampled_from(w.body_names() + ["x"]))
    w.set_body(name, claim)
    return Hostile("claims", w.parts())


@st.composite
def valid(draw, prefix: str = "fuzz/", max_len: int = 4096) -> Hostile:
    """An untouched valid message (must be delivered)."""
    return Hostile("valid", draw(wires(prefix)).parts())


CLASSES: dict[str, Callable[..., st.SearchStrategy[Hostile]]] = {
    "array_shape": array_shape,
    "array_dtype": array_dtype,
    "array_ref": array_ref,
    "header_field": header_field,
    "header_keys": header_keys,
    "body_value": body_value,
    "body_depth": body_depth,
    "part_count": part_count,
    "topic": topic,
    "src": src,
    "ext": ext,
    "truncated": truncated,
    "garbage": garbage,
    "claims": claims,
    "valid": valid,
}


def hostile_messages(
    prefix: str = "fuzz/", *, max_len: int = 4096, classes: list[str] | None = None
) -> st.SearchStrategy[Hostile]:
    """Any mutation class (or those named), topics under `prefix`, no value longer than `max_len`."""
    return st.one_of(*(CLASSES[c](prefix, max_len) for c in (classes or CLASSES)))


# -- RPC --------------------------------------------------------------------------------------------------


@dataclass
class RpcCase:
    """Frames a DEALER sends ([request_id, body, ...]) and whether the server must answer them."""

    cls: str
    frames: list[bytes]
    expect_reply: bool | None = True  # None: may or may not (a budget of under a second can run out first)

    @property
    def request_id(self) -> bytes:
        return self.frames[0]


def rpc_body(method: Any, params: Any, timeout_ms: Any = 30_000, **extra: Any) -> bytes:
    body = {"method": method, "params": params, **extra}
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    return mp(body)


def _rid() -> bytes:
    return uuid.uuid4().bytes


# param names each method reads (world: now/history/search/ask, encoder: ask/embed/info)
RPC_PARAMS = {
    "now": ["camera"],
    "history": ["camera", "since_ns", "until_ns", "kinds", "limit"],
    "search": ["text", "camera", "k"],
    "ask": ["question", "choices", "camera"],
    "watch": ["phrase", "camera", "enter", "leave"],
    "unwatch": ["id"],
    "watches": ["camera"],
    "embed": ["texts"],
    "info": [],
}


def _param_values(max_len: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        hostile_scalars,
        st.sampled_from(HUGE_INTS),
        st.sampled_from(["segment", "watch", "caption", "cam0", "hostile", "what colour is the shape?"]),
        st.lists(hostile_scalars, max_size=6),
        st.lists(st.text(max_size=12), max_size=12),
        msgpack_values,
        big_bytes(max_len).map(lambda b: b.decode("latin-1")),
    )


@st.composite
def rpc_params(draw, methods: list[str], max_len: int = 4096) -> RpcCase:
    """A known method with hostile values for the params it reads (and unknown params)."""
    method = draw(st.sampled_from(methods))
    names = RPC_PARAMS.get(method, []) + ["zz_unknown"]
    params = draw(st.dictionaries(st.sampled_from(names), _param_values(max_len), max_size=len(names)))
    return RpcCase("rpc_params", [_rid(), rpc_body(method, params)])


@st.composite
def rpc_method(draw, methods: list[str], max_len: int = 4096) -> RpcCase:
    """Unknown, empty, long, non-UTF-8 or non-string method names."""
    method = draw(
        st.one_of(
            st.text(max_size=30),
            hostile_scalars,
            big_bytes(max_len).map(lambda b: b.decode("latin-1")),
            st.sampled_from([m.upper() for m in methods] + [m + "\x00" for m in methods]),
        )
    )
    if draw(st.booleans()) and isinstance(method, str):
        body = mp_map([(mp("method"), mp_str(draw(st.sampled_from(INVALID_UTF8)))), (mp("params"), mp({}))])
    else:
        body = rpc_body(method, {})
    return RpcCase("rpc_method", [_rid(), body])


@st.composite
def rpc_envelope(draw, methods: list[str], max_len: int = 4096) -> RpcCase:
    """The body: garbage, truncated, not a map, no method, params not a map, ext types, deep nesting,
    length claims; or the frames: one, four or more, empty ones."""
    method = draw(st.sampled_from(methods))
    good = rpc_body(method, {})
    how = draw(
        st.sampled_from(
            [
                "garbage",
                "cut",
                "not_map",
                "no_method",
                "params_not_map",
                "ext",
                "deep",
                "claim",
                "frames_one",
                "frames_many",
                "empty_body",
            ]
        )
    )
    rid = _rid()
    if how == "garbage":
        return RpcCase("rpc_envelope", [rid, draw(st.binary(max_size=64))])
    if how == "cut":
        return RpcCase("rpc_envelope", [rid, good[: draw(st.integers(0, len(good) - 1))]])
    if how == "not_map":
        return RpcCase("rpc_envelope", [rid, mp(draw(hostile_scalars | msgpack_values))])
    if how == "no_method":
        return RpcCase("rpc_envelope", [rid, mp({"params": {}, "timeout_ms": 1000})])
    if how == "params_not_map":
        return RpcCase(
            "rpc_envelope", [rid, rpc_body(method, draw(hostile_scalars.filter(lambda v: v not in ({}, None))))]
        )
    if how == "ext":
        body = mp_map([(mp("method"), draw(st.sampled_from(EXT_PACKED))), (mp("params"), mp({}))])
        return RpcCase("rpc_envelope", [rid, body])
    if how == "deep":
        value = nested(draw(depths(max_len)), draw(st.sampled_from(["list", "map", "mixed"])))
        body = mp_map(
            [
                (mp("method"), mp(method)),
                (
                    mp("params"),
                    mp_map([(mp(RPC_PARAMS.get(method, ["x"])[0] if RPC_PARAMS.get(method) else "x"), value)]),
                ),
                (mp("timeout_ms"), mp(30_000)),
            ]
        )
        return RpcCase("rpc_envelope", [rid, body])
    if how == "claim":
        return RpcCase("rpc_envelope", [rid, draw(st.sampled_from(CLAIMS))])
    if how == "frames_one":
        return RpcCase("rpc_envelope", [good])  # the server reads the body as the request id
    if how == "frames_many":
        return RpcCase("rpc_envelope", [rid, good, *draw(st.lists(st.binary(max_size=8), min_size=1, max_size=6))])
    return RpcCase("rpc_envelope", [rid, b""])


@st.composite
def rpc_request_id(draw, methods: list[str], max_len: int = 4096) -> RpcCase:
    """Request ids of 0, 65, ... `max_len` bytes, or arbitrary bytes."""
    rid = draw(st.one_of(big_bytes(max_len), st.binary(max_size=80)))
    if not rid:
        rid = b""
    return RpcCase("rpc_request_id", [rid, rpc_body(draw(st.sampled_from(methods)), {})])


@st.composite
def rpc_budget(draw, methods: list[str], max_len: int = 4096) -> RpcCase:
    """timeout_ms / deadline of every type; a spent budget (<= 0, NaN) means no reply, by design."""
    method = draw(st.sampled_from(methods))
    timeout = draw(st.one_of(hostile_scalars, st.floats(), st.integers(-(2**63), 2**64 - 1)))
    deadline = draw(st.one_of(st.none(), st.sampled_from([2**64 - 1, 2**63 - 1, "tomorrow", 1.5, [], True])))
    extra = {} if deadline is None else {"deadline": deadline}
    body = rpc_body(method, {}, timeout_ms=None, **extra)
    body = mp({**msgpack.unpackb(body, raw=False), "timeout_ms": timeout})
    expect: bool | None = True  # not a number: a bad_request reply
    if type(timeout) in (int, float):
        if not timeout > 0:  # <= 0 or NaN: spent on arrival, dropped unexecuted by design
            expect = False
        elif timeout < 1000:  # a budget this short may run out before the request is served
            expect = None
    return RpcCase("rpc_budget", [_rid(), body], expect_reply=expect)


RPC_CLASSES = {
    "rpc_params": rpc_params,
    "rpc_method": rpc_method,
    "rpc_envelope": rpc_envelope,
    "rpc_request_id": rpc_request_id,
    "rpc_budget": rpc_budget,
}


def rpc_requests(methods: list[str], *, max_len: int = 4096) -> st.SearchStrategy[RpcCase]:
    return st.one_of(*(f(methods, max_len) for f in RPC_CLASSES.values()))


# -- seed corpus ------------------------------------------------------------------------------------------


@dataclass
class Seed:
    """A known defect kept as a regression case. `expect` is the codec's DecodeError reason (in-process,
    under the config's limits) or "valid"; `proxy_drops` says the proxy refuses it before any subscriber.
    `build` gives one multipart, or with `stream` a list of them (a defect that takes several messages)."""

    name: str
    cls: str
    build: Callable[[], list]
    expect: str
    proxy_drops: bool = False
    stream: bool = False

    def messages(self) -> list[list[bytes]]:
        return self.build() if self.stream else [self.build()]


def _blob(prefix: str) -> Wire:
    return Wire.of(prefix + "seed", Blob(label="seed", data=np.zeros(0, np.uint8)), src="seed")


def _with_shape(prefix: str, shape: list[int], buffer: bytes = b"") -> list[bytes]:
    w = _blob(prefix)
    w.set_body("data", mp({"nd": 0, "dtype": "uint8", "shape": shape}))
    w.buffers = [buffer]
    return w.parts()


def seed_corpus(config: BusConfig, *, prefix: str = "fuzz/", short: bool = False) -> list[Seed]:
    """Every defect found so far, as multiparts (built lazily: some are megabytes)."""
    limit = config.max_msg_size
    empty_parts = 20_000 if short else 200_000

    def event_id(segment_id: int) -> list[bytes]:
        w = Wire.of(
            prefix + "seed", Event(cam="hostile", kind="segment", segment_id=0, start_ns=0, end_ns=0), src="seed"
        )
        return w.set_body("segment_id", mp(segment_id)).parts()

    def deep_skill_event() -> list[bytes]:
        w = Wire.of(prefix + "seed", SkillEvent(skill="s", name="deep"), src="seed")
        return w.set_body("data", mp_map([(mp("k"), nested(600, "map"))])).parts()

    def deep_event_labels() -> list[bytes]:
        w = Wire.of(
            prefix + "seed", Event(cam="hostile", kind="segment", segment_id=1, start_ns=0, end_ns=0), src="seed"
        )
        return w.set_body("labels", nested(600, "list")).parts()

    def hundred_parts() -> list[bytes]:
        each = limit // 50 + 1  # 100 of them: twice the limit, each part well under it
        return [(prefix + "seed").encode(), _blob(prefix).header_bytes(), *([b"\x00" * each] * 98)]

    def long_src() -> list[bytes]:
        return _blob(prefix).set_head("src", mp_str(b"s" * (5 * MiB))).parts()

    def long_topic() -> list[bytes]:
        w = _blob(prefix)
        w.topic = prefix.encode() + b"t" * (5 * MiB)
        return w.parts()

    def frames_with_index_gap() -> list[list[bytes]]:
        """Two valid frames of one camera, indices 0 and 2**40: the encoder searched the gap frame by frame
        for the window's missing frames, holding its lock (frozen: no RPC answered, no frame taken)."""
        image = np.zeros((4, 4, 3), np.uint8)  # a topic each: frames/ is newest-wins per topic, none may be skipped
        return [
            Wire.of(f"{prefix}seed{k}", Frame(cam="gap", index=i, t_capture_ns=0, image=image), src="seed").parts()
            for k, i in enumerate((0, 2**40, 2**40 + 1))
        ]

    def text_with(seq: int = 0, t_ns: int = 0) -> list[bytes]:
        return Wire.of(prefix + "seed", Text(text="edge"), seq=seq, src="seed", t_ns=t_ns).parts()

    return [
        Seed("empty_array_65_zero_dims", "array_shape", lambda: _with_shape(prefix, [0] * 65), "bad_buffer"),
        Seed("empty_array_2pow63_by_0", "array_shape", lambda: _with_shape(prefix, [2**63, 0]), "bad_buffer"),
        Seed("dim_2pow64_minus_1", "array_shape", lambda: _with_shape(prefix, [2**64 - 1]), "bad_buffer"),
        Seed("negative_dim", "array_shape", lambda: _with_shape(prefix, [-1]), "bad_buffer"),
        Seed(
            "negative_dims_positive_product",
            "array_shape",
            lambda: _with_shape(prefix, [-2, -4], bytes(8)),
            "bad_buffer",
        ),
        Seed("dims_2pow61_squared_empty", "array_shape", lambda: _with_shape(prefix, [0, 2**61, 2**61]), "bad_buffer"),
        Seed("parts_100_over_max_size", "part_count", hundred_parts, "bad_part_count", proxy_drops=True),
        Seed(
            f"empty_parts_{empty_parts // 1000}k",
            "part_count",
            lambda: [(prefix + "seed").encode(), _blob(prefix).header_bytes(), *([b""] * empty_parts)],
            "bad_part_count",
            proxy_drops=True,
        ),
        Seed("nested_600_skill_event_data", "body_depth", deep_skill_event, "too_deep"),
        Seed("nested_600_event_labels", "body_depth", deep_event_labels, "too_deep"),
        Seed(
            "nested_100k_list",
            "body_depth",
            lambda: _blob(prefix).set_body("label", nested(100_000, "list")).parts(),
            "bad_header",
        ),
        Seed("topic_5MiB", "topic", long_topic, "bad_topic", proxy_drops=True),
        Seed("src_5MiB", "src", long_src, "bad_header"),
        Seed("event_segment_id_2pow64_minus_1", "body_value", lambda: event_id(2**64 - 1), "invalid_body"),
        Seed("event_segment_id_2pow62", "body_value", lambda: event_id(2**62), "invalid_body"),
        Seed("event_segment_id_2pow62_minus_1", "valid", lambda: event_id(2**62 - 1), "valid"),
        # header ranges: a negative `t` stopped the recorder (MCAP's publish_time is a uint64), so the codec
        # refuses `t` outside [0, 2**63); `seq` may use all of uint64
        Seed("header_t_negative", "header_field", lambda: text_with(t_ns=-1), "bad_header"),
        Seed("header_t_min_int64", "header_field", lambda: text_with(t_ns=-(2**63)), "bad_header"),
        Seed("header_t_2pow64_minus_1", "header_field", lambda: text_with(t_ns=2**64 - 1), "bad_header"),
        Seed("header_seq_2pow64_minus_1", "header_field", lambda: text_with(seq=2**64 - 1), "valid"),
        Seed("frame_index_gap_2pow40", "body_value", frames_with_index_gap, "valid", stream=True),
    ]


def random_src_wires(n: int, prefix: str = "fuzz/", seed: int = 0) -> list[list[bytes]]:
    """`n` valid messages, each from a new random `src` (a subscriber's per-stream state must stay bounded)."""
    rng = np.random.default_rng(seed)
    w = Wire.of(prefix + "srcs", Text(text="x"))
    i = w.head.index((mp("src"), mp("fuzzer")))
    head = mp_map_header(len(w.head) + 1) + b"".join(k + v for k, v in w.head[:i]) + mp("src")
    tail = b"".join(k + v for k, v in w.head[i + 1 :]) + mp("body") + mp_map(w.body)
    names = rng.bytes(6 * n).hex()
    return [[w.topic, head + mp(names[12 * j : 12 * j + 12]) + tail] for j in range(n)]


@dataclass
class RpcSeed:
    name: str
    cls: str
    build: Callable[[], RpcCase]
    targets: tuple[str, ...]  # "world", "encoder"


def rpc_seed_corpus() -> list[RpcSeed]:
    """The RPC defects found so far: a 1 MiB request id, uint64-max ints, a 100k-char question, 1000 choices.
    (`ask` names camera cam0, the camera the campaign feeds, so that the model really runs on them.)"""
    u64 = 2**64 - 1

    def case(name: str, method: str, params: Any, rid: bytes | None = None) -> Callable[[], RpcCase]:
        return lambda: RpcCase(name, [rid or _rid(), rpc_body(method, params)])

    choices = [f"choice number {i}" for i in range(1000)]
    return [
        RpcSeed(
            "rpc_request_id_1MiB",
            "rpc_request_id",
            case("rpc_request_id", "now", {}, rid=b"r" * MiB),
            ("world", "encoder"),
        ),
        RpcSeed(
            "rpc_history_uint64_params",
            "rpc_params",
            case("rpc_params", "history", {"limit": u64, "since_ns": u64, "until_ns": -(2**63), "camera": "hostile"}),
            ("world",),
        ),
        RpcSeed(
            "rpc_history_limit_negative", "rpc_params", case("rpc_params", "history", {"limit": -(2**63)}), ("world",)
        ),
        RpcSeed(
            "rpc_search_k_uint64", "rpc_params", case("rpc_params", "search", {"text": "red", "k": u64}), ("world",)
        ),
        RpcSeed("rpc_now_camera_uint64", "rpc_params", case("rpc_params", "now", {"camera": u64}), ("world",)),
        RpcSeed(
            "rpc_ask_uint64_camera",
            "rpc_params",
            case("rpc_params", "ask", {"question": "q", "camera": u64}),
            ("world", "encoder"),
        ),
        RpcSeed(
            "rpc_ask_question_100k_chars",
            "rpc_params",
            case("rpc_params", "ask", {"question": "w" * 100_000, "camera": "cam0"}),
            ("world", "encoder"),
        ),
        RpcSeed(
            "rpc_ask_1000_choices",
            "rpc_params",
            case("rpc_params", "ask", {"question": "what colour is the shape?", "choices": choices, "camera": "cam0"}),
            ("world", "encoder"),
        ),
        RpcSeed(
            "rpc_ask_choices_100k_chars",
            "rpc_params",
            case(
                "rpc_params", "ask", {"question": "which?", "choices": ["c" * 100_000, "d" * 100_000], "camera": "cam0"}
            ),
            ("world", "encoder"),
        ),
        RpcSeed(
            "rpc_search_text_100k_chars",
            "rpc_params",
            case("rpc_params", "search", {"text": "t" * 100_000}),
            ("world",),
        ),
        RpcSeed(
            "rpc_params_nested_600",
            "rpc_envelope",
            lambda: RpcCase(
                "rpc_envelope",
                [_rid(), mp_map([(mp("method"), mp("now")), (mp("params"), mp_map([(mp("camera"), nested(600))]))])],
            ),
            ("world", "encoder"),
        ),
    ]
