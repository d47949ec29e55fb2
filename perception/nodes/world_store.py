"""The world node's records and its persist file: what a record may hold, one checksummed JSON line per
record, a loader that keeps every intact line of a torn or corrupted file and says what it dropped, and an
append-only file that is fsynced, private (0600) and compacted by atomic rename.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bus.reader_limits import PERSIST_LINE_MAX_BYTES
from perception.messages import Caption, Event
from perception.nodes.safe_files import NotRegularFile, open_regular, replace_atomically

KINDS = ("segment", "watch", "caption")
MAX_LINE_BYTES = PERSIST_LINE_MAX_BYTES  # bus/reader_limits.py: a D=1536 segment line is ~40 KB
CRC_MARK = b',"crc32":'

# record fields: int = an int64 (bool refused), id = 0 <= int < 2**62 (as perception.messages), float =
# a finite number, labels = [{label: str, score: float}], optstr = a string or null
_SPAN = {"camera": "str", "segment_id": "id", "start_ns": "int", "end_ns": "int", "start_s": "float", "end_s": "float"}
FIELDS: dict[str, dict[str, str]] = {
    "segment": {**_SPAN, "labels": "labels"},
    "watch": {**_SPAN, "labels": "labels", "watch": "str", "active": "bool", "watch_id": "optstr"},
    "caption": {**_SPAN, "text": "str", "latency_ms": "float"},
}
OPTIONAL = {"watch_id"}  # absent from records written before it existed: read as null


def event_record(ev: Event) -> dict[str, Any]:
    rec = {
        "kind": ev.kind,
        "camera": ev.cam,
        "segment_id": ev.segment_id,
        "start_ns": ev.start_ns,
        "end_ns": ev.end_ns,
        "start_s": ev.start_s,
        "end_s": ev.end_s,
        "labels": [{"label": x.label, "score": x.score} for x in ev.labels],
    }
    if ev.kind == "watch":
        rec.update(watch=ev.watch, active=ev.active, watch_id=ev.watch_id)
    return rec


def caption_record(c: Caption) -> dict[str, Any]:
    return {
        "kind": "caption",
        "camera": c.cam,
        "segment_id": c.segment_id,
        "text": c.text,
        "start_ns": c.start_ns,
        "end_ns": c.end_ns,
        "start_s": c.start_s,
        "end_s": c.end_s,
        "latency_ms": c.latency_ms,
    }


# -- record checks (messages and persisted lines go through the same ones) ----------------------------------


def is_int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v < hi


def is_number(v: Any) -> bool:
    """A finite float, or an int64 (JSON writes 1.0 as 1.0, but a peer may send 1)."""
    return (type(v) is float and math.isfinite(v)) or is_int(v, -(2**63), 2**63)


def _is_labels(v: Any) -> bool:
    return type(v) is list and all(
        type(x) is dict and x.keys() == {"label", "score"} and type(x["label"]) is str and is_number(x["score"])
        for x in v
    )


_CHECKS = {
    "str": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
    "int": lambda v: is_int(v, -(2**63), 2**63),
    "id": lambda v: is_int(v, 0, 2**62),
    "float": is_number,
    "labels": _is_labels,
    "optstr": lambda v: v is None or type(v) is str,
}


def check_record(rec: Any) -> dict[str, Any]:
    """`rec` if it is a world record: a known kind with exactly its fields, each of its type, numbers finite
    (a NaN time would sort and compare wrongly for good); else ValueError saying what is wrong."""
    if type(rec) is not dict:
        raise ValueError(f"not a JSON object but {type(rec).__name__}")
    fields = FIELDS.get(rec.get("kind"))  # type: ignore[arg-type]
    if fields is None:
        raise ValueError(f"unknown kind {str(rec.get('kind'))[:40]!r}")
    for key in OPTIONAL & fields.keys() - rec.keys():
        rec[key] = None
    if rec.keys() != fields.keys() | {"kind"}:
        raise ValueError(f"fields {sorted(rec.keys() ^ (fields.keys() | {'kind'}))} missing or unexpected")
    for key, kind in fields.items():
        if not _CHECKS[kind](rec[key]):
            raise ValueError(f"{key} is not a valid {kind}")
    if rec["kind"] == "watch" and not rec["labels"]:
        raise ValueError("a watch record needs its score label")
    return rec


def check_embedding(emb: Any, dim: int) -> np.ndarray:
    """`emb` as float32 [dim] if it is a finite real vector of that length; else ValueError. A vector of
    another length would make the search bank unstackable for every camera."""
    arr = np.asarray(emb)
    if arr.dtype.kind not in "fiu" or arr.shape != (dim,):
        raise ValueError(f"embedding of shape {arr.shape} and dtype {arr.dtype}, expected float [{dim}]")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("embedding has non-finite values")
    return arr


# -- the persist file's lines ----------------------------------------------------------------------------


def encode_line(rec: dict[str, Any], emb: np.ndarray | None) -> bytes:
    """One persist line: the record (+ its segment embedding) as compact ASCII JSON, its CRC-32 last.

    The checksum covers the line's own bytes, so any damage to them (a torn write, a flipped byte that
    still parses, as inside a caption's text) is caught on reload; the line stays plain JSON (jq reads it).
    """
    line = dict(rec)
    if rec["kind"] == "segment":
        line["embedding"] = emb.tolist() if emb is not None else None
    body = json.dumps(line, separators=(",", ":"), allow_nan=False).encode("ascii")
    return body[:-1] + CRC_MARK + b"%d}\n" % zlib.crc32(body)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def decode_line(raw: bytes) -> Any:
    """The JSON value of one line (without its newline), its checksum verified; ValueError if damaged.
    A line without a checksum (a file from before checksums) is parsed as it is."""
    head, mark, tail = raw.rpartition(CRC_MARK)
    if mark:
        if not (tail.endswith(b"}") and tail[:-1].isdigit()):
            raise ValueError("damaged checksum field")
        raw = head + b"}"
        if zlib.crc32(raw) != int(tail[:-1]):
            raise ValueError("checksum mismatch")
    return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)


def parse_line(raw: bytes, dim: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """(record, segment embedding or None) of one line; ValueError if it is anything else."""
    try:
        rec = decode_line(raw)
    except RecursionError as exc:  # nesting deeper than the JSON parser goes
        raise ValueError("nested too deeply") from exc
    emb = None
    if type(rec) is dict:
        emb = rec.pop("embedding", None)
    check_record(rec)
    if emb is not None and rec["kind"] != "segment":
        raise ValueError(f"a {rec['kind']} record has an embedding")
    return rec, check_embedding(emb, dim) if emb is not None else None


def _raw_lines(fh: BinaryIO) -> Iterator[bytes | None]:
    """The file's lines without their newline, read one at a time (never the whole file); None for a
    line longer than MAX_LINE_BYTES, which is skipped to its end without being held."""
    while line := fh.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = fh.readline(MAX_LINE_BYTES)
            yield None
        else:
            yield line.removesuffix(b"\n")


@dataclass
class Line:
    number: int  # 1-based
    record: dict[str, Any] | None  # None: the line was dropped
    embedding: np.ndarray | None = None
    error: str = ""


def read_lines(path: Path, dim: int) -> Iterator[Line]:
    """Every line of a persist file, parsed (or with the reason it was dropped), streamed. Blank lines (the
    end of a torn line a later append started afresh) are no records and no damage: skipped silently."""
    with open_regular(path) as fh:  # no symlink followed, no device (a /dev/zero has no end of line)
        for number, raw in enumerate(_raw_lines(fh), 1):
            if raw == b"":
                continue
            if raw is None:
                yield Line(number, None, error=f"longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                rec, emb = parse_line(raw, dim)
            except (ValueError, TypeError) as exc:
                yield Line(number, None, error=str(exc)[:200])
            else:
                yield Line(number, rec, emb)


def load_records(path: Path, dim: int) -> tuple[list[tuple[dict, np.ndarray | None]], list[tuple[int, str]]]:
    """(the valid records with their embeddings, in file order; (line number, reason) of each dropped line)."""
    kept, dropped = [], []
    for line in read_lines(path, dim):
        if line.record is None:
            dropped.append((line.number, line.error))
        else:
            kept.append((line.record, line.embedding))
    return kept, dropped


class PersistFile:
    """The append-only file behind the world's memory: mode 0600, rewritten atomically, synced in groups.

    - `append` writes each record to the kernel at once (one `os.write`, no user-space buffer), so a
      crashed process loses nothing. `sync` fsyncs; the node calls it every `fsync_interval_s` (group
      fsync) rather than per record, because an fsync costs milliseconds on an SSD and far more on an SD
      card, and it would hold every RPC reply behind the disk; a power cut loses at most that interval.
      `fsync_interval_s: 0` fsyncs every record.
    - `rewrite` (compaction) writes a temp file (0600), fsyncs it, renames it over the file and fsyncs the
      directory: a crash at any point leaves the old file or the new one, each complete.
    - A write that fails half-way leaves a torn line; the next append starts a fresh line, so only that
      record is lost.
    """

    def __init__(self, path: Path, fsync_interval_s: float) -> None:
        self.path = path
        self.fsync_interval_s = fsync_interval_s
        self.lines = 0  # lines in the file (as far as this process wrote or counted them)
        self._fd = -1
        self._dirty = False
        self._torn = False

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def open_append(self, lines: int) -> None:
        """Append to the file as it is (created 0600 if absent; a wider mode is narrowed to 0600)."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(self._fd)
            self._fd = -1
            raise NotRegularFile(f"{self.path} is not a regular file")
        if st.st_mode & 0o077:
            os.fchmod(self._fd, 0o600)
        self.lines = lines
        # a torn last line (a crash mid-write) is ended before the first append, which would join it
        self._torn = st.st_size > 0 and os.pread(self._fd, 1, st.st_size - 1) != b"\n"

    def append(self, line: bytes) -> None:
        if self._torn:
            line = b"\n" + line
        try:
            _write_all(self._fd, line)
        except OSError:
            self._torn = True
            raise
        self._torn = False
        self.lines += 1
        self._dirty = True
        if self.fsync_interval_s == 0:
            self.sync()

    def sync(self) -> None:
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False

    def rewrite(self, lines: Iterable[bytes]) -> None:
        """Replace the file by `lines`, atomically and durably, then append to the new one."""
        count = replace_atomically(self.path, lines)  # a fresh O_EXCL temp file: nothing planted is followed
        old, self._fd = self._fd, os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        if old >= 0:
            os.close(old)
        self.lines, self._dirty, self._torn = count, False, False

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
