"""Hostile files, built in memory: the bomb corpus of tests/hostile/files.py and the row tests of issue 32.

Each builder writes a small file that declares (or inflates to) far more than it holds: an MCAP chunk that
inflates to 1 GiB (zstd, lz4; declared honestly or lying), a tar whose sparse member expands to 2 GiB, a
watch file that is a symlink to /dev/zero. The readers must refuse them within bus/reader_limits.py.
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from pathlib import Path

import msgpack
from mcap.data_stream import RecordBuilder
from mcap.records import Channel, Chunk, ChunkIndex, DataEnd, Footer, Header, Message, Metadata, MetadataIndex
from mcap.stream_reader import MAGIC_SIZE

from bus.mcapfile import LAYOUT, MESSAGE_ENCODING, pack_message

MiB = 1 << 20
GiB = 1 << 30
MAGIC = b"\x89MCAP0\r\n"
assert len(MAGIC) == MAGIC_SIZE


# -- MCAP -------------------------------------------------------------------------------------------------


def _record(rec) -> bytes:
    rb = RecordBuilder()
    rec.write(rb)
    return bytes(rb.end())


def _bus_message_data(payload: bytes = b"x") -> bytes:
    header = msgpack.packb({"type": "Blob", "v": 1, "seq": 0, "src": "bomb", "t": 1, "body": {}})
    return pack_message(header, [payload])


def _channel() -> Channel:
    return Channel(
        id=1,
        topic="demo/bomb",
        message_encoding=MESSAGE_ENCODING,
        schema_id=0,
        metadata={"layout": LAYOUT, "type": "Blob", "v": "1"},
    )


def _message_prefix(data_len: int) -> bytes:
    """The opcode, length and fixed fields of a Message record whose data is `data_len` bytes."""
    rb = RecordBuilder()
    Message(channel_id=1, sequence=0, log_time=1, publish_time=1, data=b"").write(rb)
    fixed = bytes(rb.end())  # opcode(1) length(8) channel(2) seq(4) log(8) pub(8)
    return fixed[:1] + (len(fixed) - 9 + data_len).to_bytes(8, "little") + fixed[9:]


def compress_stream(compression: str, pieces) -> bytes:
    """`pieces` (an iterable of bytes) compressed as one frame, streamed (1 GiB of zeros never in memory)."""
    if compression == "zstd":
        import zstandard

        cobj = zstandard.ZstdCompressor(level=3).compressobj()
        out = [cobj.compress(p) for p in pieces]
        return b"".join(out) + cobj.flush()
    if compression == "lz4":
        import lz4.frame

        comp = lz4.frame.LZ4FrameCompressor()
        out = [comp.begin()] + [comp.compress(p) for p in pieces]
        return b"".join(out) + comp.flush()
    return b"".join(pieces)


def bomb_chunk_records(inflated: int) -> tuple[list[bytes], int, int]:
    """A chunk's records: the channel, then one message whose data is zeros up to `inflated` bytes in all.
    Returns (pieces, total bytes, CRC)."""
    channel = _record(_channel())
    prefix = _message_prefix(inflated - len(channel) - len(_message_prefix(0)))
    head = channel + prefix
    pieces, crc, left = [head], zlib.crc32(head), inflated - len(head)
    zeros = bytes(MiB)
    while left > 0:
        piece = zeros[: min(MiB, left)]
        crc = zlib.crc32(piece, crc)
        pieces.append(piece)
        left -= len(piece)
    return pieces, inflated, crc


def mcap_file(chunk: Chunk, *, summary: bool = True) -> bytes:
    """A complete MCAP file (magic, header, the chunk, data end, summary with the chunk's index, footer)."""
    out = bytearray(MAGIC)
    out += _record(Header(profile="", library="file_bombs"))
    chunk_start = len(out)
    out += _record(chunk)
    chunk_len = len(out) - chunk_start
    meta_start = len(out)
    out += _record(Metadata(name="session", metadata={"config": "{}"}))
    meta_len = len(out) - meta_start
    out += _record(DataEnd(data_section_crc=0))
    summary_start = len(out) if summary else 0
    if summary:
        out += _record(_channel())
        out += _record(
            ChunkIndex(
                message_start_time=chunk.message_start_time,
                message_end_time=chunk.message_end_time,
                chunk_start_offset=chunk_start,
                chunk_length=chunk_len,
                message_index_offsets={},
                message_index_length=0,
                compression=chunk.compression,
                compressed_size=len(chunk.data),
                uncompressed_size=chunk.uncompressed_size,
            )
        )
        out += _record(MetadataIndex(offset=meta_start, length=meta_len, name="session"))
    out += _record(Footer(summary_start=summary_start, summary_offset_start=0, summary_crc=0))
    out += MAGIC
    return bytes(out)


def mcap_bomb(compression: str = "zstd", inflated: int = GiB, declared: int | None = None) -> bytes:
    """A tiny MCAP whose one chunk inflates to `inflated` bytes of records; `declared` is what its header
    says (default: the truth; smaller: a chunk that lies about its size)."""
    pieces, total, crc = bomb_chunk_records(inflated)
    data = compress_stream(compression, pieces)
    chunk = Chunk(
        compression=compression,
        data=data,
        message_start_time=1,
        message_end_time=1,
        uncompressed_crc=crc if declared is None else 0,
        uncompressed_size=total if declared is None else declared,
    )
    return mcap_file(chunk)


def mcap_small(compression: str = "zstd", messages: int = 3, payload: bytes = b"hello") -> bytes:
    """A valid small recording in our layout (the seed the hypothesis strategy mutates)."""
    records = _record(_channel())
    for i in range(messages):
        records += _record(
            Message(channel_id=1, sequence=i, log_time=1 + i, publish_time=1 + i, data=_bus_message_data(payload))
        )
    chunk = Chunk(
        compression=compression,
        data=compress_stream(compression, [records]),
        message_start_time=1,
        message_end_time=messages,
        uncompressed_crc=zlib.crc32(records),
        uncompressed_size=len(records),
    )
    return mcap_file(chunk)


# -- tar shards -------------------------------------------------------------------------------------------


def sparse_tar(real_size: int = 2 * GiB, name: str = "000000000.mp4") -> bytes:
    """A tar (PAX, GNU sparse 1.0) whose one member expands to `real_size` bytes from a few KB on disk,
    plus the sample's .json: what `tar --sparse` writes for a file of holes."""
    sparse_map = b"1\n%d\n1\n" % (real_size - 1)  # one data block of 1 byte at the end, holes before it
    sparse_map += b"\0" * (-len(sparse_map) % 512)
    body = sparse_map + b"x"
    info = tarfile.TarInfo("GNUSparseFile.0/" + name)
    info.size = len(body)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(real_size),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(body))
        meta = json.dumps({"start": 0.0, "end": 1.0, "text": "bomb", "line": 1}).encode()
        j = tarfile.TarInfo(name.rsplit(".", 1)[0] + ".json")
        j.size = len(meta)
        tar.addfile(j, io.BytesIO(meta))
    return buf.getvalue()


def write_shard_dir(out: Path, tar_bytes: bytes, samples: int = 1) -> Path:
    """A shard directory with one shard of `tar_bytes` and its index.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "shard-000000.tar").write_bytes(tar_bytes)
    doc = {"format": "webdataset-tar", "manifest": "", "samples": samples, "shards": [["shard-000000.tar", samples]]}
    (out / "index.json").write_text(json.dumps(doc))
    return out


# -- measuring a command ----------------------------------------------------------------------------------

_MEASURE = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(p.returncode)\n"
)


def run_measured(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, peak RSS in MiB) of `argv`, run as the only child of a small wrapper
    (so RUSAGE_CHILDREN is that command's own peak, not this process's other children's)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    err, _, peak = proc.stderr.rpartition("PEAK_RSS_KB ")
    return proc.returncode, proc.stdout, err, int(peak.strip() or 0) / 1024
