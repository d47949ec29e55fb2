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

import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgpack
from mcap.records import Channel, Chunk, Footer, Message, Metadata
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

from bus.bounded import BoundedDict
from bus.logs import get_logger

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
    damage: str | None = None  # why the scan stopped early, if it did
    bad_messages: int = 0  # messages on our channels whose data does not follow the layout


def _open(path: str | Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise RecordingError(f"recording not found: {path}") from exc


def scan(path: str | Path, result: ScanResult | None = None) -> Iterator[tuple[Channel, Message]]:
    """Every readable message in file order, even from a truncated file (a recorder killed mid-write).

    Stops at the first record that cannot be read (a partly written chunk, a bad CRC) and notes why in
    `result.damage`; records before it are all returned. Channels and metadata are collected in `result`.
    """
    result = result if result is not None else ScanResult()
    with _open(path) as f:
        reader = StreamReader(f, emit_chunks=True, record_size_limit=2**32)
        records = reader.records
        while True:
            try:
                record = next(records)
                inner = breakup_chunk(record, validate_crc=True) if isinstance(record, Chunk) else [record]
            except StopIteration:
                break
            except Exception as exc:  # EOF mid-record, bad magic, CRC mismatch, zstd error...
                result.damage = f"{type(exc).__name__}: {exc}"[:300]
                break
            for rec in inner:
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
        if result.damage and "magic" in result.damage.lower() and not result.channels:
            raise RecordingError(f"{path} is not an MCAP file ({result.damage})")


def is_ours(channel: Channel) -> bool:
    return channel.message_encoding == MESSAGE_ENCODING and channel.metadata.get("layout") == LAYOUT


def to_stored(channel: Channel, message: Message) -> StoredMessage:
    header, buffers = unpack_message(message.data)
    return StoredMessage(
        topic=channel.topic,
        type=channel.metadata.get("type", ""),
        v=int(channel.metadata.get("v", "0") or 0),
        seq=message.sequence,
        log_time=message.log_time,
        publish_time=message.publish_time,
        header=header,
        buffers=buffers,
    )


def matches(topic: str, prefixes: Iterable[str] | None) -> bool:
    prefixes = list(prefixes or [])
    return not prefixes or any(topic.startswith(p) for p in prefixes)


def check_complete(path: str | Path) -> None:
    """Raise RecordingError unless the file ends with a valid footer (i.e. the recorder stopped cleanly)."""
    from mcap.reader import SeekingReader

    with _open(path) as f:
        try:
            SeekingReader(f).get_summary()
        except Exception as exc:
            raise RecordingError(
                f"{path} is incomplete or damaged ({type(exc).__name__}); if its recorder was killed, "
                f"run `perception record --recover {path} FIXED.mcap` first"
            ) from exc


def iter_messages(
    path: str | Path, topics: Iterable[str] | None = None, start_ns: int | None = None
) -> Iterator[StoredMessage]:
    """Messages of a complete recording in log-time order (the official indexed reader), filtered by topic prefix."""
    from mcap.reader import make_reader

    check_complete(path)
    prefixes = list(topics or [])
    with _open(path) as f:
        reader = make_reader(f)
        wanted = [c.topic for c in reader.get_summary().channels.values() if matches(c.topic, prefixes)]
        if not wanted:
            return
        for _schema, channel, message in reader.iter_messages(topics=wanted, start_time=start_ns, log_time_order=True):
            if is_ours(channel):
                yield to_stored(channel, message)


# -- recovery ---------------------------------------------------------------------------------------------


@dataclass
class RecoverResult:
    messages: int
    channels: int
    complete: bool  # the input already had a footer
    damage: str | None
    gaps: dict[str, int]


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
    return RecoverResult(writer.messages, len(result.channels), result.complete, result.damage, seqs.gaps)


def load_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    """Metadata records by name (the last one wins), from any readable file."""
    result = ScanResult()
    for _ in scan(path, result):
        pass
    return {m.name: dict(m.metadata) for m in result.metadata}


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
    "load_metadata",
    "matches",
    "is_ours",
    "to_stored",
    "header_src",
]
