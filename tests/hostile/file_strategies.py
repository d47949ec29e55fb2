"""Hypothesis strategies for hostile FILES: each draws a valid file of its kind and one structural mutation,
so that the result gets past the first checks and reaches the deep ones (the file counterpart of
tests/hostile/strategies.py). Every strategy yields a `FileCase(label, data, kind)`: the bytes to write,
or for `kind` "symlink"/"fifo"/"sparse" what to make instead; the shm strategy yields `ShmCase`.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.hostile.file_bombs import (
    _bus_message_data,
    _channel,
    _record,
    compress_stream,
    mcap_file,
)

HUGE = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**64 - 1]


@dataclass(frozen=True)
class FileCase:
    label: str  # the mutation, for counting
    data: bytes = b""
    kind: str = "file"  # file | symlink (data: the target) | fifo | dir | sparse (data: decimal size)


def _mutate_bytes(draw, data: bytes) -> tuple[str, bytes]:
    """A generic byte-level mutation: flip, truncate, insert, overwrite 8 bytes with a huge little-endian
    length (most MCAP/tar length fields are 8 bytes or octal text)."""
    how = draw(st.sampled_from(["flip", "truncate", "insert", "u64"]))
    if not data:
        return how, data
    at = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        return how, data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if how == "truncate":
        return how, data[:at]
    if how == "insert":
        return how, data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    value = draw(st.sampled_from(HUGE)) & (2**64 - 1)
    return how, data[:at] + struct.pack("<Q", value) + data[at + 8 :]


# -- MCAP ---------------------------------------------------------------------------------------------------


@st.composite
def mcap_files(draw) -> FileCase:
    compression = draw(st.sampled_from(["zstd", "lz4", ""]))
    n = draw(st.integers(0, 5))
    payload = draw(st.binary(max_size=256))
    records = _record(_channel())
    for i in range(n):
        from mcap.records import Message

        records += _record(Message(channel_id=1, sequence=i, log_time=1 + i, publish_time=1 + i,
                                   data=_bus_message_data(payload)))  # fmt: skip
    how = draw(st.sampled_from(["declared", "crc", "inner", "bytes", "valid"]))
    declared, crc = len(records), zlib.crc32(records)
    if how == "declared":  # a chunk that lies about its uncompressed size
        declared = draw(st.sampled_from([*HUGE, max(0, len(records) - 1), len(records) + 1]))
    elif how == "crc":
        crc = draw(st.integers(1, 2**32 - 1))
    elif how == "inner":  # a mutated record inside the chunk, the chunk itself consistent
        _, records = _mutate_bytes(draw, records)
        declared, crc = len(records), zlib.crc32(records)
    from mcap.records import Chunk

    chunk = Chunk(
        compression=compression,
        data=compress_stream(compression, [records]),
        message_start_time=1,
        message_end_time=max(1, n),
        uncompressed_crc=crc,
        uncompressed_size=declared & (2**64 - 1),
    )
    data = mcap_file(chunk, summary=draw(st.booleans()))
    label = f"mcap.{how}"
    if how == "bytes":
        sub, data = _mutate_bytes(draw, data)
        label += f".{sub}"
    return FileCase(label, data)


# -- tar shards ---------------------------------------------------------------------------------------------


def _member(name: str, data: bytes, pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    if pax:
        info.pax_headers = pax
    return info, data


@st.composite
def tar_shards(draw) -> FileCase:
    samples = draw(st.integers(1, 3))
    members = []
    for i in range(samples):
        meta = json.dumps({"start": 0.0, "end": 1.0, "text": "x", "line": i + 1}).encode()
        members.append(_member(f"{i:09d}.mp4", draw(st.binary(max_size=600))))
        members.append(_member(f"{i:09d}.json", meta))
    how = draw(st.sampled_from(["sparse", "pax_size", "many", "bytes", "valid"]))
    if how == "sparse":  # a GNU sparse 1.0 member expanding to a drawn size
        real = draw(st.sampled_from([1, 4096, 2**28 + 1, 2**31, 2**40, 2**62]))
        offset = draw(st.sampled_from([0, real - 1, real, 2**63]))
        body = b"1\n%d\n1\n" % offset
        body += b"\0" * (-len(body) % 512) + b"x"
        pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "000000000.mp4",
               "GNU.sparse.realsize": str(real)}  # fmt: skip
        members[0] = _member("GNUSparseFile.0/000000000.mp4", body, pax)
    elif how == "pax_size":  # a PAX header that declares the member's size
        members[0] = _member(members[0][0].name, members[0][1], {"size": str(draw(st.sampled_from(HUGE)))})
    elif how == "many":
        members += [_member(f"000000000.x{k}", b"x") for k in range(draw(st.integers(10, 40)))]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    label = f"tar.{how}"
    if how == "bytes":
        sub, data = _mutate_bytes(draw, data)
        label += f".{sub}"
    return FileCase(label, data)


# -- the world's watch file and persist file ---------------------------------------------------------------

_JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=40)
)
_JSON = st.recursive(_JSON_LEAVES, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)  # fmt: skip


def _watch_entry(draw) -> dict:
    entry = {"id": f"w-{draw(st.integers(0, 2**32 - 1)):08x}", "phrase": draw(st.text(min_size=1, max_size=30)),
             "enter": 0.5, "leave": 0.4, "camera": draw(st.sampled_from([None, "cam0", "x" * 80]))}  # fmt: skip
    if draw(st.booleans()):
        entry[draw(st.sampled_from(list(entry)))] = draw(_JSON)
    return entry


@st.composite
def watch_files(draw) -> FileCase:
    doc = {"version": 1, "watches": [_watch_entry(draw) for _ in range(draw(st.integers(0, 5)))]}
    how = draw(st.sampled_from(["entries", "doc", "nested", "size", "bytes", "valid"]))
    if how == "doc":
        doc = draw(_JSON)
    data = json.dumps(doc).encode()
    if how == "nested":
        depth = draw(st.integers(1000, 200_000))
        data = b'{"version": 1, "watches": ' + b"[" * depth + b"]" * depth + b"}"
    elif how == "size":
        return FileCase("watch.size", str(draw(st.sampled_from([2**20 + 1, 2**30, 2**34]))).encode(), "sparse")
    label = f"watch.{how}"
    if how == "bytes":
        sub, data = _mutate_bytes(draw, data)
        label += f".{sub}"
    return FileCase(label, data)


@st.composite
def persist_files(draw) -> FileCase:
    from perception.nodes.world_store import encode_line

    lines = []
    for i in range(draw(st.integers(0, 4))):
        rec = {"kind": "event", "cam": "cam0", "t_ns": i, "label": "x", "score": 0.5}
        if draw(st.booleans()):
            rec[draw(st.sampled_from(list(rec)))] = draw(_JSON)
        try:
            lines.append(encode_line(rec, None))
        except (ValueError, TypeError):
            lines.append(json.dumps(rec, default=str).encode() + b"\n")
    data = b"".join(lines)
    how = draw(st.sampled_from(["records", "long_line", "nested", "bytes"]))
    if how == "long_line":
        data += b"x" * draw(st.sampled_from([2**22 - 1, 2**22 + 1, 2**23])) + draw(st.sampled_from([b"", b"\n"]))
    elif how == "nested":
        depth = draw(st.integers(1000, 100_000))
        data += b"[" * depth + b"]" * depth + b"\n"
    label = f"persist.{how}"
    if how == "bytes":
        sub, data = _mutate_bytes(draw, data)
        label += f".{sub}"
    return FileCase(label, data)


# -- shared-memory segments and references ------------------------------------------------------------------


@dataclass(frozen=True)
class ShmCase:
    label: str
    slots: int  # in the segment's header
    stride: int
    max_borrowed: int
    real_slots: int  # what the memfd is sized for
    sealed: bool
    magic_ok: bool
    data_off: int
    ref: dict  # slot, off (relative to the slot's data), len, gen
    shrink_after: bool  # the forger truncates the segment after the reference is read


@st.composite
def shm_segments(draw) -> ShmCase:
    from bus import shm

    page_strides = [shm.DATA_OFFSET + shm.PAGE, shm.DATA_OFFSET + 16 * shm.PAGE]
    slots = draw(st.sampled_from([1, 2, 8, 1024, 1025, 300_000, 2**32 - 1]))
    stride = draw(st.sampled_from([*page_strides, shm.DATA_OFFSET, shm.DATA_OFFSET + 1, 2**31, 2**32 - 4096]))
    how = draw(st.sampled_from(["header", "ref", "unsealed", "shrink", "valid"]))
    sealed = how not in ("unsealed",) and draw(st.booleans()) if how != "valid" else True
    if how == "valid":
        slots, stride = 2, page_strides[0]
    real_slots = min(slots, 4) if draw(st.booleans()) else min(slots, 2)
    ref = {"slot": 0, "off": 0, "len": 4096, "gen": 1}
    if how == "ref":
        ref = {"slot": draw(st.sampled_from([0, 1, 3, 2**31])), "off": draw(st.sampled_from([0, 1, 4096, 2**40])),
               "len": draw(st.sampled_from([0, 1, 4096, 2**31, 2**62])), "gen": draw(st.sampled_from([0, 1, 2]))}  # fmt: skip
    return ShmCase(
        label=f"shm.{how}",
        slots=slots,
        stride=stride,
        max_borrowed=draw(st.sampled_from([0, 1, 2, 2**31])),
        real_slots=real_slots,
        sealed=sealed,
        magic_ok=how == "valid" or draw(st.integers(0, 9)) > 0,
        data_off=shm.HEADER_BYTES if how == "valid" or draw(st.integers(0, 9)) > 0 else 0,
        ref=ref,
        shrink_after=how in ("shrink", "unsealed") or draw(st.booleans()),
    )
