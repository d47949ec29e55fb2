"""Our MCAP layout: how one bus message is stored, and tolerant reading of files written with it.

A recording is a plain MCAP file (https://mcap.dev/spec) written with the `mcap` library:

- one channel per (topic, message type, major version); normally that is one channel per topic.
  `message_encoding` is "msgpack" (MCAP's registry), `schema_id` 0 (msgpack has no schema record in the
  registry); the bus type lives in the channel metadata: {"layout": LAYOUT, "type": "Blob", "v": "1"}.
- a message's data is ONE msgpack array: [header_map, buf0, buf1, ...] where header_map is the bus header
  exactly as it travelled (part 1 of the wire message, bytes copied verbatim, not re-encoded) and bufN are
  msgpack `bin` objects holding the raw array buffers (parts 2+) unchanged. So
  `msgpack.unpackb(data)` gives `[{"type", "v", "seq", "src", "t", "body"}, b"...", ...]`, and an array
  field `{"nd": i, "dtype", "shape"}` in body points at element 1 + i. No code of ours is needed to read it.
- log_time = the recorder's receive time (ns since epoch), publish_time = the header's `t`,
  sequence = the header's `seq` (MCAP's field is uint32: seq modulo 2**32).
- metadata records: "session" (written first: config, model id, git revision, host, topics, start time),
  "recording" (written on a clean stop: counts, seq gaps per topic), "recovery" (written by `recover`).
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgpack
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, ChunkIndex, Footer, Message, Metadata, MetadataIndex, Statistics
from mcap.stream_reader import StreamReader
from mcap.summary import Summary
from mcap.writer import CompressionType, Writer

from bus.bounded import BoundedDict
from bus.logs import get_logger
from bus.reader_limits import (
    MCAP_MAX_CHUNK_BYTES,
    MCAP_MAX_CHUNK_RECORDS,
    MCAP_MAX_PENDING_BYTES,
    MCAP_MAX_RECORD_BYTES,
    MiB,
)

LAYOUT = "vljepa-bus/1"
MESSAGE_ENCODING = "msgpack"
PROFILE = ""  # no standard MCAP profile covers msgpack bus messages
COMPRESSIONS = {"none": CompressionType.NONE, "lz4": CompressionType.LZ4, "zstd": CompressionType.ZSTD}

log = get_logger("bus.mcapfile")


class RecordingError(ValueError):
    """A file that is not a readable recording (missing, not MCAP, not our layout, truncated)."""


# -- the message layout -----------------------------------------------------------------------------------


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 2**16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def _bin_header(n: int) -> bytes:
    if n < 2**8:
        return b"\xc4" + bytes([n])
    if n < 2**16:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


def pack_message(header: bytes | memoryview, buffers: Sequence[bytes | memoryview]) -> bytes:
    """[header_map, bin0, bin1, ...] as msgpack bytes, by concatenation (header and buffers are not re-encoded)."""
    pieces: list[bytes | memoryview] = [_array_header(1 + len(buffers)), header]
    for buf in buffers:
        pieces.append(_bin_header(len(buf)))
        pieces.append(buf)
    return b"".join(pieces)


def unpack_message(data: bytes | memoryview) -> tuple[bytes, list[memoryview]]:
    """Inverse of pack_message: (the header's msgpack bytes, buffers as zero-copy views into `data`).

    Together with the topic these are exactly the wire parts, so replay sends them unchanged.
    """
    view = memoryview(data)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(view), 1024))
    unpacker.feed(view)
    try:
        n = unpacker.read_array_header()
        start = unpacker.tell()
        unpacker.skip()
        end = unpacker.tell()
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise RecordingError(f"message data is not a msgpack array ({type(exc).__name__})") from exc
    if n < 1:
        raise RecordingError("message data is an empty array (no header)")
    header = bytes(view[start:end])
    buffers: list[memoryview] = []
    pos = end
    for _ in range(n - 1):
        tag = view[pos] if pos < len(view) else None
        if tag == 0xC4:
            size, pos = view[pos + 1], pos + 2
        elif tag == 0xC5:
            size, pos = struct.unpack_from(">H", view, pos + 1)[0], pos + 3
        elif tag == 0xC6:
            size, pos = struct.unpack_from(">I", view, pos + 1)[0], pos + 5
        else:
            raise RecordingError(f"buffer {len(buffers)} is not a msgpack bin object")
        if pos + size > len(view):
            raise RecordingError(f"buffer {len(buffers)} runs past the end of the message data")
        buffers.append(view[pos : pos + size])
        pos += size
    return header, buffers


def read_header(header: bytes) -> dict:
    """The bus header map of a stored message (body included)."""
    value = msgpack.unpackb(header, raw=False)
    if not isinstance(value, dict):
        raise RecordingError("stored header is not a msgpack map")
    return value


# -- writing ----------------------------------------------------------------------------------------------


def _str_map(values: dict) -> dict[str, str]:
    """MCAP metadata holds str -> str: nested values become JSON."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True) for k, v in values.items()}


class BusMcapWriter:
    """Writes bus messages in our layout. `flush()` closes the current chunk and hands it to the kernel."""

    def __init__(
        self,
        path: str | Path,
        *,
        chunk_size: int = 1024 * 1024,
        compression: str = "zstd",
        overwrite: bool = True,
    ) -> None:
        """`overwrite=False` refuses an existing file (FileExistsError) instead of truncating it."""
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of {sorted(COMPRESSIONS)}")
        self.path = Path(path)
        self._file: IO[bytes] = open(self.path, "wb" if overwrite else "xb")
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=COMPRESSIONS[compression])
        self._writer.start(profile=PROFILE, library=f"vljepa-perception {LAYOUT}")
        self._channels: dict[tuple[str, str, int], int] = {}
        self.messages = 0
        self.bytes = 0
        self._closed = False

    def channel(self, topic: str, type_name: str, version: int, extra: dict[str, str] | None = None) -> int:
        key = (topic, type_name, version)
        cid = self._channels.get(key)
        if cid is None:
            meta = {"layout": LAYOUT, "type": type_name, "v": str(version), **(extra or {})}
            cid = self._writer.register_channel(topic, MESSAGE_ENCODING, 0, meta)
            self._channels[key] = cid
        return cid

    def write(self, topic: str, type_name: str, version: int, *, seq: int, t_pub: int, t_log: int, data: bytes) -> None:
        cid = self.channel(topic, type_name, version)
        self._writer.add_message(cid, log_time=t_log, data=data, publish_time=t_pub, sequence=seq % 2**32)
        self.messages += 1
        self.bytes += len(data)

    def size(self) -> int:
        """Bytes written to the file so far (closed chunks; the chunk in progress is not counted)."""
        return self._file.tell()

    def metadata(self, name: str, values: dict) -> None:
        self._writer.add_metadata(name, _str_map(values))

    def flush(self) -> None:
        """Finish the chunk in progress and flush Python's buffer: after this a SIGKILL loses nothing written."""
        self._writer.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.finish()
        self._file.close()

    def abandon(self) -> None:
        """Close the file without writing anything more (after a write failed, e.g. a full disk): what
        reached the kernel stays as it is, a file `scan` and `recover` read up to the last whole chunk."""
        if self._closed:
            return
        self._closed = True
        try:
            self._file.close()  # flushes Python's buffer if it can; the fd is closed either way
        except OSError:
            pass


# -- reading ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StoredMessage:
    """One recorded bus message: enough to republish it verbatim or decode it."""

    topic: str
    type: str
    v: int
    seq: int
    log_time: int
    publish_time: int
    header: bytes
    buffers: list[memoryview]

    def parts(self) -> list[bytes | memoryview]:
        """The original wire multipart."""
        return [self.topic.encode(), self.header, *self.buffers]


@dataclass
class ScanResult:
    """What a sequential, tolerant pass over a file found."""

    channels: dict[int, Channel] = field(default_factory=dict)
    metadata: list[Metadata] = field(default_factory=list)
    complete: bool = False  # footer reached
    damage: str | None = None  # the first damage met: a chunk skipped, or why the scan stopped early
    bad_messages: int = 0  # messages on our channels whose data does not follow the layout
    skipped_chunks: int = 0  # chunks read whole whose content is bad (CRC, compression, limits): left out


def _open(path: str | Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise RecordingError(f"recording not found: {path}") from exc


# -- bounded reading: what a file declares never sizes an allocation (bus/reader_limits.py) ---------------


class _CappedReads:
    """A file whose every read is at most MCAP_MAX_RECORD_BYTES: the mcap library reads a record's inner
    lengths (a chunk's data, a string) straight from the file, so a forged length asks for that much.
    (Not an io.RawIOBase: the library would wrap that in a BufferedReader, whose read(n) allocates n.)"""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MCAP_MAX_RECORD_BYTES:
            raise RecordingError(f"a record field declares {n} bytes, over the {MCAP_MAX_RECORD_BYTES} limit")
        return self._f.read(n)


def _mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def inflate_chunk(chunk: Chunk) -> bytes:
    """A chunk's records, decompressed to at most its declared size, which is at most MCAP_MAX_CHUNK_BYTES.

    zstd and lz4 stream into a buffer of the declared size: a frame that inflates past it (a bomb whose
    chunk header lies) stops at the limit. RecordingError for a chunk too large, lying or corrupt."""
    declared = chunk.uncompressed_size
    if declared > MCAP_MAX_CHUNK_BYTES:
        raise RecordingError(
            f"a chunk declares {_mib(declared)} uncompressed, over the {_mib(MCAP_MAX_CHUNK_BYTES)} limit"
        )
    try:
        if chunk.compression == "zstd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(chunk.data, read_across_frames=True)
            data = reader.read(declared + 1)
        elif chunk.compression == "lz4":
            import lz4.frame

            data = lz4.frame.LZ4FrameDecompressor().decompress(chunk.data, max_length=declared + 1)
        elif chunk.compression == "":
            data = chunk.data
        else:
            raise RecordingError(f"a chunk uses unknown compression {chunk.compression[:40]!r}")
    except RecordingError:
        raise
    except Exception as exc:  # zstd / lz4 errors have no common base
        raise RecordingError(f"a {chunk.compression} chunk does not decompress ({type(exc).__name__})") from exc
    if len(data) != declared:
        held = "more than" if len(data) > declared else f"{len(data)} bytes, not"
        raise RecordingError(f"a {chunk.compression or 'plain'} chunk holds {held} the {declared} bytes it declares")
    if chunk.uncompressed_crc != 0 and zlib.crc32(data) != chunk.uncompressed_crc:
        raise RecordingError("a chunk's CRC does not match its records")
    return data


def chunk_records(chunk: Chunk) -> Iterator[Channel | Message]:
    """The Channel and Message records of a chunk, one at a time (at most MCAP_MAX_CHUNK_RECORDS)."""
    data = inflate_chunk(chunk)
    stream = ReadDataStream(io.BytesIO(data))
    for n in range(MCAP_MAX_CHUNK_RECORDS + 1):
        if stream.count >= len(data):
            return
        if n == MCAP_MAX_CHUNK_RECORDS:
            raise RecordingError(f"a chunk holds more than {MCAP_MAX_CHUNK_RECORDS} records")
        try:
            opcode = stream.read1()
            length = stream.read8()
            if length > len(data) - stream.count:
                raise RecordingError(f"a record in a chunk declares {length} bytes, past the chunk's end")
            start = stream.count
            if opcode == Opcode.CHANNEL:
                yield Channel.read(stream)
            elif opcode == Opcode.MESSAGE:
                yield Message.read(stream, length)
            if (padding := length - (stream.count - start)) > 0:
                stream.read(padding)
        except RecordingError:
            raise
        except Exception as exc:  # a record cut short, bad UTF-8 in a topic...
            raise RecordingError(f"a chunk holds an unreadable record ({type(exc).__name__})") from exc


def _records(f: IO[bytes], *, skip_magic: bool = False) -> Iterator:
    """The mcap library's StreamReader over `f` with every record and field read bounded (chunks whole)."""
    return StreamReader(
        _CappedReads(f), skip_magic=skip_magic, emit_chunks=True, record_size_limit=MCAP_MAX_RECORD_BYTES
    ).records


def scan(path: str | Path, result: ScanResult | None = None) -> Iterator[tuple[Channel, Message]]:
    """Every readable message in file order, even from a truncated file (a recorder killed mid-write).

    A chunk read whole whose content is bad (a CRC mismatch, a compression error, over the limits of
    bus/reader_limits.py) is skipped and counted in `result.skipped_chunks`, and the scan goes on: the
    chunks after it are kept. It stops at the first record that cannot be read at all (a partly written
    chunk at the end, bad magic). The first damage is noted in `result.damage`. Channels and metadata are
    collected in `result`.
    """
    result = result if result is not None else ScanResult()
    with _open(path) as f:
        records = _records(f)
        while True:
            try:
                record = next(records)
                inner = chunk_records(record) if isinstance(record, Chunk) else iter([record])
                try:
                    first = next(inner, None)  # a chunk inflates (and checks its CRC) before its first record
                except Exception as exc:  # this chunk only: its length was intact, the next one can be read
                    result.damage = result.damage or f"{type(exc).__name__}: {exc}"[:300]
                    result.skipped_chunks += 1
                    continue
                for rec in itertools.chain([first] if first is not None else [], inner):
                    if isinstance(rec, Channel):
                        result.channels[rec.id] = rec
                    elif isinstance(rec, Metadata):
                        result.metadata.append(rec)
                    elif isinstance(rec, Message):
                        channel = result.channels.get(rec.channel_id)
                        if channel is not None:
                            yield channel, rec
                    elif isinstance(rec, Footer):
                        result.complete = True
            except StopIteration:
                break
            except Exception as exc:  # EOF mid-record, bad magic, a record over a limit...
                result.damage = result.damage or f"{type(exc).__name__}: {exc}"[:300]
                break
        if result.damage and "magic" in result.damage.lower() and not result.channels:
            raise RecordingError(f"{path} is not an MCAP file ({result.damage})")


def is_ours(channel: Channel) -> bool:
    return channel.message_encoding == MESSAGE_ENCODING and channel.metadata.get("layout") == LAYOUT


def channel_version(channel: Channel) -> int:
    """The message version a channel of ours declares (metadata `v`), or a one-line RecordingError."""
    v = channel.metadata.get("v", "0") or "0"
    if not (v.isascii() and v.isdigit() and len(v) <= 9):
        raise RecordingError(f"channel {channel.topic[:80]!r}: metadata v = {v[:20]!r} is not a message version")
    return int(v)


def to_stored(channel: Channel, message: Message) -> StoredMessage:
    header, buffers = unpack_message(message.data)
    return StoredMessage(
        topic=channel.topic,
        type=channel.metadata.get("type", ""),
        v=channel_version(channel),
        seq=message.sequence,
        log_time=message.log_time,
        publish_time=message.publish_time,
        header=header,
        buffers=buffers,
    )


def matches(topic: str, prefixes: Iterable[str] | None) -> bool:
    prefixes = list(prefixes or [])
    return not prefixes or any(topic.startswith(p) for p in prefixes)


def read_summary(f: IO[bytes]) -> Summary:
    """The summary section of an open, complete file (its footer must be valid), read with the limits of
    bus/reader_limits.py and without decompressing anything (a chunk there is damage, not data)."""
    from mcap.reader import FOOTER_SIZE
    from mcap.stream_reader import MAGIC_SIZE

    f.seek(0)
    magic = f.read(MAGIC_SIZE)
    if len(magic) < MAGIC_SIZE or f.seek(0, io.SEEK_END) < 2 * MAGIC_SIZE + FOOTER_SIZE:
        raise RecordingError("too short for an MCAP file")
    f.seek(-(FOOTER_SIZE + MAGIC_SIZE), io.SEEK_END)
    footer = next(_records(f, skip_magic=True))
    if not isinstance(footer, Footer) or f.read(MAGIC_SIZE) != magic:
        raise RecordingError("no footer at the end of the file")
    summary = Summary()
    if footer.summary_start == 0:
        return summary
    f.seek(footer.summary_start)
    for record in _records(f, skip_magic=True):
        if isinstance(record, Chunk):
            raise RecordingError("the summary section holds a chunk")
        if isinstance(record, Channel):
            summary.channels[record.id] = record
        elif isinstance(record, ChunkIndex):
            summary.chunk_indexes.append(record)
        elif isinstance(record, MetadataIndex):
            summary.metadata_indexes.append(record)
        elif isinstance(record, Statistics):
            summary.statistics = record
        elif isinstance(record, Footer):
            break
    return summary


def check_complete(path: str | Path) -> None:
    """Raise RecordingError unless the file ends with a valid footer (i.e. the recorder stopped cleanly)."""
    with _open(path) as f:
        try:
            read_summary(f)
        except Exception as exc:
            if "magic" in f"{type(exc).__name__} {exc}".lower():  # random bytes: nothing to recover
                raise RecordingError(f"{path} is not an MCAP file ({type(exc).__name__})") from exc
            raise RecordingError(
                f"{path} is incomplete or damaged ({type(exc).__name__}: {str(exc)[:160]}); if its recorder was "
                f"killed, run `perception record --recover {path} FIXED.mcap` first"
            ) from exc


def check_intact(path: str | Path) -> None:
    """`check_complete`, and every chunk read and its CRC checked (one full pass, as `perception info`):
    for commands that must refuse a damaged file before they start (test, replay), not fail halfway."""
    check_complete(path)
    result = ScanResult()
    for _ in scan(path, result):
        pass
    if result.damage or not result.complete:
        raise RecordingError(
            f"{path} is damaged ({result.damage or 'no footer'}); `perception record --recover {path} "
            "FIXED.mcap` keeps every readable chunk"
        )


def _read_chunk(f: IO[bytes], index: ChunkIndex) -> Chunk:
    if index.chunk_length > MCAP_MAX_RECORD_BYTES:
        raise RecordingError(f"a chunk of {_mib(index.chunk_length)}, over the {_mib(MCAP_MAX_RECORD_BYTES)} limit")
    f.seek(index.chunk_start_offset)
    try:
        chunk = next(_records(f, skip_magic=True))
    except RecordingError:
        raise
    except Exception as exc:
        raise RecordingError(f"no readable chunk at offset {index.chunk_start_offset} ({type(exc).__name__})") from exc
    if not isinstance(chunk, Chunk):
        raise RecordingError(f"the chunk index points at a {type(chunk).__name__}, not a chunk")
    return chunk


def _indexed_messages(
    f: IO[bytes], summary: Summary, wanted: set[int], start_ns: int | None
) -> Iterator[tuple[Channel, Message]]:
    """Messages of channels `wanted` in log-time order, through the chunk index (as the official reader),
    holding at most MCAP_MAX_PENDING_BYTES of message data at once: chunks are loaded in order of their
    start time and merged; only chunks whose time ranges overlap are held together."""
    heap: list[tuple] = []  # (time, chunk offset, index in chunk (-1: the chunk itself), payload): the
    # official reader's order (ties by position in the file)
    for ci in summary.chunk_indexes:
        if start_ns is not None and ci.message_end_time < start_ns:
            continue
        if ci.message_index_offsets and not wanted.intersection(ci.message_index_offsets):
            continue
        heap.append((ci.message_start_time, ci.chunk_start_offset, -1, ci))
    heapq.heapify(heap)
    pending = 0  # bytes of message data in the heap
    while heap:
        _t, offset, k, item = heapq.heappop(heap)
        if k >= 0:
            pending -= len(item.data)
            yield summary.channels[item.channel_id], item
            continue
        for k, rec in enumerate(chunk_records(_read_chunk(f, item))):
            if not isinstance(rec, Message) or rec.channel_id not in wanted:
                continue
            if start_ns is not None and rec.log_time < start_ns:
                continue
            pending += len(rec.data)
            if pending > MCAP_MAX_PENDING_BYTES:
                raise RecordingError(
                    f"chunks overlapping in time hold over {_mib(MCAP_MAX_PENDING_BYTES)} of messages at once"
                )
            heapq.heappush(heap, (rec.log_time, offset, k, rec))


def iter_messages(
    path: str | Path, topics: Iterable[str] | None = None, start_ns: int | None = None
) -> Iterator[StoredMessage]:
    """Messages of a complete recording in log-time order (through its chunk index, as the official
    reader, within bus/reader_limits.py), filtered by topic prefix. A file without a chunk index (not
    ours) is read in file order."""
    check_complete(path)
    prefixes = list(topics or [])
    with _open(path) as f:
        summary = read_summary(f)
        wanted = {cid for cid, c in summary.channels.items() if matches(c.topic, prefixes) and is_ours(c)}
        if not wanted:
            return
        if summary.chunk_indexes:
            found = _indexed_messages(f, summary, wanted, start_ns)
        else:
            found = ((c, m) for c, m in scan(path) if m.channel_id in wanted and m.log_time >= (start_ns or 0))
        try:
            for channel, message in found:
                yield to_stored(channel, message)
        except RecordingError as exc:  # a chunk that fails its CRC, say: name the file and the way out
            raise RecordingError(
                f"{path} is damaged ({exc}); `perception record --recover {path} FIXED.mcap` keeps every readable chunk"
            ) from exc


def metadata_records(path: str | Path) -> list[Metadata]:
    """The file's metadata records in file order: through the summary's index when the file is complete
    (nothing decompressed), else by a tolerant scan."""
    with _open(path) as f:
        try:
            summary = read_summary(f)
        except Exception:
            summary = None
        if summary is not None and summary.metadata_indexes:
            try:
                out = []
                for index in summary.metadata_indexes:
                    f.seek(index.offset)
                    record = next(_records(f, skip_magic=True))
                    if isinstance(record, Metadata):
                        out.append(record)
                return out
            except Exception:  # a damaged index: the scan below reads what it can
                pass
    result = ScanResult()
    for _ in scan(path, result):
        pass
    return result.metadata


# -- recovery ---------------------------------------------------------------------------------------------


@dataclass
class RecoverResult:
    messages: int
    channels: int
    complete: bool  # the input already had a footer
    damage: str | None
    gaps: dict[str, int]
    skipped_chunks: int = 0  # unreadable chunks left out; those after them are kept


class SeqTracker:
    """Counts seq gaps and restarts per (src, topic), the same rule as the bus subscriber.

    The last seqs are kept for at most `max_streams` (src, topic) pairs (least recently seen fall out and
    start over), since `src` is whatever a publisher says. `gaps`/`resets` are per topic: callers bound topics.
    """

    def __init__(self, max_streams: int = 4096) -> None:
        self.last: BoundedDict[tuple[str, str], int] = BoundedDict(max_streams)
        self.gaps: dict[str, int] = {}
        self.resets: dict[str, int] = {}

    def add(self, src: str, topic: str, seq: int) -> None:
        key = (src, topic)
        last = self.last.get(key)
        self.last[key] = seq
        self.gaps.setdefault(topic, 0)
        if last is None or seq == last + 1:
            return
        if seq > last + 1:
            self.gaps[topic] += seq - last - 1
        else:
            self.resets[topic] = self.resets.get(topic, 0) + 1


def header_src(header: bytes) -> str:
    """The `src` field of a stored header without decoding the body."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(header)
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key == "src":
            return str(unpacker.unpack())
        unpacker.skip()
    return ""


def recover(broken: str | Path, fixed: str | Path, *, compression: str = "zstd") -> RecoverResult:
    """Copy every readable message and metadata record of `broken` into a new, complete file `fixed`."""
    if Path(broken).resolve() == Path(fixed).resolve():
        raise RecordingError("recover writes a new file: FIXED must differ from BROKEN")
    result = ScanResult()
    writer = BusMcapWriter(fixed, compression=compression)
    seqs = SeqTracker()
    written_meta = 0
    try:
        for channel, message in scan(broken, result):
            while written_meta < len(result.metadata):  # keep metadata in file order (session first)
                meta = result.metadata[written_meta]
                writer.metadata(meta.name, dict(meta.metadata))
                written_meta += 1
            if not is_ours(channel):
                result.bad_messages += 1
                continue
            try:
                stored = to_stored(channel, message)
            except RecordingError:
                result.bad_messages += 1
                continue
            seqs.add(header_src(stored.header), stored.topic, message.sequence)
            extra = {k: v for k, v in channel.metadata.items() if k not in ("layout", "type", "v")}
            writer.channel(channel.topic, stored.type, stored.v, extra)
            writer.write(
                channel.topic,
                stored.type,
                stored.v,
                seq=message.sequence,
                t_pub=message.publish_time,
                t_log=message.log_time,
                data=message.data,
            )
        for meta in result.metadata[written_meta:]:
            writer.metadata(meta.name, dict(meta.metadata))
        writer.metadata(
            "recovery",
            {
                "source": str(broken),
                "messages": writer.messages,
                "input_complete": result.complete,
                "damage": result.damage or "",
                "unreadable_messages": result.bad_messages,
                "skipped_chunks": result.skipped_chunks,
                "gaps": seqs.gaps,
                "resets": seqs.resets,
            },
        )
    except RecordingError:
        writer.close()
        Path(fixed).unlink(missing_ok=True)  # no half-made output for an input that is not a recording
        raise
    finally:
        writer.close()
    log.info("recovered recording", src=str(broken), dst=str(fixed), messages=writer.messages, damage=result.damage)
    return RecoverResult(
        writer.messages, len(result.channels), result.complete, result.damage, seqs.gaps, result.skipped_chunks
    )


def load_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    """Metadata records by name (the last one wins), from any readable file."""
    return {m.name: dict(m.metadata) for m in metadata_records(path)}


__all__ = [
    "LAYOUT",
    "MESSAGE_ENCODING",
    "BusMcapWriter",
    "RecordingError",
    "StoredMessage",
    "ScanResult",
    "SeqTracker",
    "pack_message",
    "unpack_message",
    "read_header",
    "scan",
    "iter_messages",
    "recover",
    "check_complete",
    "check_intact",
    "load_metadata",
    "metadata_records",
    "read_summary",
    "inflate_chunk",
    "chunk_records",
    "matches",
    "is_ours",
    "to_stored",
    "header_src",
]
