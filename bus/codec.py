"""Wire codec: a Message <-> one ZeroMQ multipart, exactly as docs/architecture.md "Wire format".

    part 0   topic, UTF-8 (subscribers filter on this part only)
    part 1   msgpack map {type, v, seq, src, t, body}; an ndarray field in body is
             {"nd": i, "dtype": "uint8", "shape": [...]} and its bytes are part 2 + i
    part 2+  raw C-contiguous little-endian buffers, sent without copying

`decode` never trusts its input: every failure is a `DecodeError` with a short reason code that receivers
count - whatever the bytes, nothing else ever escapes it (a receiver that died on one message would stop
draining its socket for good). Limits are checked before anything is built: part count, total size,
topic and `src` length, array rank and nesting depth of the body. Arrays come back as read-only `np.frombuffer` views over the received frames (no copy).
Unknown body fields are dropped so that a minor (compatible) addition by a newer sender is accepted;
a newer *major* version (`v`) is rejected.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np
import zmq
from pydantic import BaseModel, ValidationError

from bus.message import Message, lookup

Reason = Literal[
    "bad_part_count",
    "bad_topic",
    "bad_header",
    "unknown_type",
    "newer_version",
    "invalid_body",
    "bad_buffer",
    "oversize",
    "too_deep",
    "shm_stale",  # a shared-memory frame overwritten before it was read: an expected, counted drop
    "shm_unavailable",  # a shared-memory reference this process cannot map (publisher gone, other host)
]

MAX_NDIM = 32  # numpy's own limit is 64; no message of ours needs more than 5

# dtypes a C or Node.js reader can map without numpy; object / string / structured dtypes never travel.
WIRE_DTYPES = frozenset(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 complex64 complex128".split()
)
_WIRE_DTYPE_OBJECTS = {name: np.dtype(name).newbyteorder("<") for name in WIRE_DTYPES}  # also the allow-list
# native little-endian wire dtypes -> name: one dict lookup on the encode fast path (dtype.name is slow)
_WIRE_NAME_OF = {np.dtype(name).newbyteorder("<"): name for name in WIRE_DTYPES}
_HEADER_KEYS = {"type": str, "v": int, "seq": int, "src": str, "t": int}


class DecodeError(ValueError):
    """A multipart that is not a valid bus message; `reason` is one of `Reason`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


class EncodeError(ValueError):
    """A message that cannot be put on the wire (unregistered type, unsupported dtype or value)."""


@dataclass(slots=True)
class Header:
    """Everything but the body: cheap to read for recorders and introspection."""

    topic: str
    type: str
    v: int
    seq: int
    src: str
    t: int  # publish time, ns since epoch


@dataclass(slots=True)
class Envelope(Header):
    """The header plus the decoded, validated message."""

    msg: Message
    nbytes: int  # total size on the wire

    def __str__(self) -> str:
        return f"{self.topic} #{self.seq} from {self.src}: {self.msg}"


def _wire_array(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """C-contiguous, little-endian, allowed dtype, and its wire name. Copies only when not already so."""
    name = _WIRE_NAME_OF.get(arr.dtype)
    if name is not None and arr.flags.c_contiguous:  # fast path: the common case, nothing to check
        return arr, name
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.name not in WIRE_DTYPES:
        raise EncodeError(f"dtype {arr.dtype} cannot travel on the bus (allowed: {sorted(WIRE_DTYPES)})")
    return (arr if arr.flags.c_contiguous else arr.copy(order="C")), arr.dtype.name


def _msgpack_default(obj: Any) -> Any:
    """Values msgpack does not know natively: nested models, tuples/sets, numpy scalars, enums."""
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"value of type {type(obj).__name__} cannot be encoded (only top-level ndarray fields)")


_local = threading.local()


def _packer() -> msgpack.Packer:
    """One reusable Packer per thread (a Packer is not thread-safe; building one per message costs)."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, default=_msgpack_default)
    return packer


# `place(buffers) -> {i: ref}`: buffers it put in shared memory, by index, and the reference part for each
Place = Callable[[list[memoryview]], dict[int, bytes] | None]
# `resolve(parts, indices) -> parts`: reference parts replaced by buffers (bus/shm.py); raises DecodeError
Resolve = Callable[[Sequence[Any], Any], list[Any]]


def encode(
    topic: str, msg: Message, *, seq: int, src: str, t_ns: int, place: Place | None = None
) -> list[bytes | memoryview]:
    """One bus message as multipart parts; array parts are memoryviews over the arrays (zero copy).

    The caller must not mutate those arrays until the send has completed (pyzmq `copy=False` semantics).
    `place` (the publisher's shared-memory ring) may take buffers: their parts become references, listed
    by index in the header's `shm` key.
    """
    cls = type(msg)
    if not cls.TYPE or lookup(cls.TYPE) is not cls:
        raise EncodeError(f"{cls.__name__} is not a registered message type (use @bus.message.register)")
    body = dict(msg.__dict__)  # field values; nested models are dumped by _msgpack_default
    buffers: list[memoryview] = []
    for name in cls.ARRAY_FIELDS:
        value = body[name]
        if value is None:
            continue
        arr, dtype_name = _wire_array(value)
        body[name] = {"nd": len(buffers), "dtype": dtype_name, "shape": list(arr.shape)}
        buffers.append(memoryview(arr.reshape(-1).view(np.uint8)))  # 1-d byte view, no copy
    header = {"type": cls.TYPE, "v": cls.VERSION, "seq": seq, "src": src, "t": t_ns, "body": body}
    if place is not None and buffers:
        refs = place(buffers)
        if refs:
            header["shm"] = sorted(refs)
            for i, ref in refs.items():
                buffers[i] = ref  # type: ignore[call-overload]
    try:
        packed = _packer().pack(header)  # the Packer resets its buffer when pack raises
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"{cls.TYPE} on {topic!r}: {exc}") from exc
    return [topic.encode(), packed, *buffers]


def _view(part: Any) -> memoryview:
    if isinstance(part, zmq.Frame):
        return part.buffer
    return memoryview(part)


def _bytes(part: Any) -> bytes:
    if isinstance(part, zmq.Frame):
        return part.bytes
    return bytes(part)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may be; `BusConfig.limits()` gives the configured ones."""

    max_size: int | None = None  # bytes, all parts together
    max_parts: int = 64
    max_topic_bytes: int = 256
    max_src_bytes: int = 256
    max_depth: int = 32


DEFAULT_LIMITS = Limits()


def _check_size(parts: Sequence[Any], max_size: int | None, max_parts: int = DEFAULT_LIMITS.max_parts) -> int:
    if len(parts) < 2:
        raise DecodeError("bad_part_count", f"{len(parts)} part(s), need topic and header")
    if len(parts) > max_parts:
        raise DecodeError("bad_part_count", f"{len(parts)} parts > limit {max_parts}")
    total = 0
    for p in parts:
        total += p.nbytes if type(p) is memoryview else len(p)
    if max_size is not None and total > max_size:
        raise DecodeError("oversize", f"{total} bytes > limit {max_size}")
    return total


def _topic(part: Any, max_bytes: int) -> str:
    raw = _bytes(part)
    if len(raw) > max_bytes:
        raise DecodeError("bad_topic", f"topic of {len(raw)} bytes > limit {max_bytes}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("bad_topic", "topic is not UTF-8") from exc


def _check_header_fields(header: dict, limits: Limits) -> None:
    for key, kind in _HEADER_KEYS.items():
        if type(header.get(key)) is not kind:  # exact: bool is not an int here
            raise DecodeError("bad_header", f"header field {key!r} missing or not {kind.__name__}")
    if not (0 <= header["v"] < 2**31 and 0 <= header["seq"] < 2**64 and 0 <= header["t"] < 2**63):
        raise DecodeError("bad_header", "header fields 'v', 'seq' and 't' must be non-negative and in range")
    src = header["src"]  # at most 4 bytes a character: encode only when that could exceed the limit
    if len(src) * 4 > limits.max_src_bytes and len(src.encode("utf-8", "surrogatepass")) > limits.max_src_bytes:
        raise DecodeError("bad_header", f"header field 'src' longer than {limits.max_src_bytes} bytes")


def _check_depth(body: dict, max_depth: int) -> None:
    """Nesting of maps and lists, walked level by level (iterative: a hostile depth must not recurse in
    here either); a flat body costs one pass over its values."""
    level = [v for v in body.values() if type(v) is dict or type(v) is list]
    depth = 2
    while level:
        if depth > max_depth:
            raise DecodeError("too_deep", f"body nested deeper than {max_depth}")
        below = []
        for value in level:
            for child in value.values() if type(value) is dict else value:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1


def _guarded(fn):
    """Anything but a DecodeError from a decoder is a bug or an input we did not foresee: still a reject."""

    def wrapper(*args: Any, **kw: Any):
        try:
            return fn(*args, **kw)
        except DecodeError:
            raise
        except Exception as exc:  # RecursionError, MemoryError-free numpy errors, msgpack oddities ...
            raise DecodeError("invalid_body", f"undecodable ({type(exc).__name__}: {str(exc)[:200]})") from exc

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn
    return wrapper


@_guarded
def peek(parts: Sequence[Any], *, max_size: int | None = None, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Header without the body (the body is skipped, not parsed): for recorders and `perception topics`."""
    _check_size(parts, limits.max_size if max_size is None else max_size, limits.max_parts)
    topic = _topic(parts[0], limits.max_topic_bytes)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(_bytes(parts[1]))
    fields: dict[str, Any] = {}
    try:
        n = unpacker.read_map_header()
        for _ in range(n):
            key = unpacker.unpack()
            if key == "body":
                unpacker.skip()
            else:
                fields[key] = unpacker.unpack()
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError("bad_header", f"header is not a msgpack map ({type(exc).__name__})") from exc
    _check_header_fields(fields, limits)
    return Header(topic, fields["type"], fields["v"], fields["seq"], fields["src"], fields["t"])


def _array(ref: Any, parts: Sequence[Any], used: set[int]) -> np.ndarray:
    if type(ref) is not dict or len(ref) != 3:
        raise DecodeError("bad_buffer", "array reference must be {nd, dtype, shape}")
    nd, dtype, shape = ref.get("nd"), ref.get("dtype"), ref.get("shape")
    if type(nd) is not int or nd < 0 or nd in used:
        raise DecodeError("bad_buffer", f"array index {nd!r} does not name a buffer part")
    if nd >= len(parts) - 2:
        raise DecodeError("bad_part_count", f"array index {nd} but only {len(parts) - 2} buffer part(s)")
    dt = _WIRE_DTYPE_OBJECTS.get(dtype) if type(dtype) is str else None
    if dt is None:
        raise DecodeError("bad_buffer", f"dtype {dtype!r} not allowed")
    if type(shape) is not list or len(shape) > MAX_NDIM:
        raise DecodeError("bad_buffer", f"shape must be a list of at most {MAX_NDIM} dims")
    for d in shape:  # a loop, not all(generator): this runs for every array received
        if type(d) is not int or not 0 <= d < 2**62:  # numpy refuses sizes near 2**63
            raise DecodeError("bad_buffer", f"shape {shape[:8]!r} must hold non-negative ints below 2**62")
    used.add(nd)
    buf = _view(parts[2 + nd])
    expected = math.prod(shape) * dt.itemsize
    if buf.nbytes != expected:
        raise DecodeError("bad_buffer", f"buffer {nd} has {buf.nbytes} bytes, {dtype}{shape[:8]} needs {expected}")
    arr = np.frombuffer(buf, dtype=dt)
    if len(shape) == 1:
        return arr
    try:
        return arr.reshape(shape)
    except (ValueError, OverflowError) as exc:  # e.g. an empty buffer with absurd dims
        raise DecodeError("bad_buffer", f"shape {shape[:8]!r} cannot view {buf.nbytes} bytes: {exc}") from exc


def array_from_ref(ref: Any, buffers: Sequence[Any]) -> np.ndarray:
    """The array a body's reference {nd, dtype, shape} names among `buffers` (a recording's stored parts),
    checked as `decode` checks it; DecodeError saying what is wrong (readers of files, not of the bus)."""
    try:
        return _array(ref, [b"", b"", *buffers], set())
    except DecodeError:
        raise
    except Exception as exc:  # the same promise as decode: nothing but a DecodeError, whatever `ref` holds
        raise DecodeError("bad_buffer", f"array reference {str(ref)[:80]}: {type(exc).__name__}") from exc


@_guarded
def decode(
    parts: Sequence[Any],
    *,
    max_size: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    resolve: Resolve | None = None,
) -> Envelope:
    """Parts (bytes, memoryviews or zmq.Frames) -> validated Envelope, or DecodeError with a reason.

    A header with `shm` (buffers by reference) needs `resolve` (bus/shm.py); without it the message is
    a `bad_buffer` reject. Never raises anything else, whatever `parts` hold."""
    nbytes = _check_size(parts, limits.max_size if max_size is None else max_size, limits.max_parts)
    topic = _topic(parts[0], limits.max_topic_bytes)
    try:
        header = msgpack.unpackb(_bytes(parts[1]), raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError("bad_header", f"header is not msgpack ({type(exc).__name__})") from exc
    if not isinstance(header, dict):
        raise DecodeError("bad_header", f"header is a {type(header).__name__}, not a map")
    _check_header_fields(header, limits)
    body = header.get("body")
    if not isinstance(body, dict):
        raise DecodeError("bad_header", "header field 'body' missing or not a map")
    _check_depth(body, limits.max_depth)
    refs = header.get("shm")
    if refs is not None:
        if resolve is None:
            raise DecodeError("bad_buffer", "buffers by shared-memory reference, and this reader maps none")
        parts = resolve(parts, refs)
        nbytes = _check_size(parts, limits.max_size if max_size is None else max_size, limits.max_parts)
    cls = lookup(header["type"])
    if cls is None:
        raise DecodeError("unknown_type", f"unknown message type {header['type']!r}")
    if header["v"] > cls.VERSION:
        raise DecodeError("newer_version", f"{cls.TYPE} v{header['v']} is newer than this reader's v{cls.VERSION}")
    names = cls.FIELD_NAMES
    fields = (
        body if body.keys() <= names else {k: v for k, v in body.items() if k in names}
    )  # newer minor fields dropped
    used: set[int] = set()
    for name in cls.ARRAY_FIELDS:
        if fields.get(name) is not None:
            fields[name] = _array(fields[name], parts, used)
    if len(used) != len(parts) - 2:
        raise DecodeError("bad_part_count", f"{len(parts) - 2} buffer part(s), {len(used)} referenced")
    try:
        msg = cls.__pydantic_validator__.validate_python(fields)  # = model_validate, one call less
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<body>"
        raise DecodeError(
            "invalid_body", f"{cls.TYPE}: {exc.error_count()} error(s), first {where}: {first['msg']}"
        ) from exc
    return Envelope(topic, cls.TYPE, header["v"], header["seq"], header["src"], header["t"], msg, nbytes)
