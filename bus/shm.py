"""Same-host frames through shared memory: a ring of slots per (publisher, topic), references on the bus.

The ZeroMQ message is unchanged but for its large buffers: the header gains `shm`, the list of buffer
indices whose part 2 + i is a reference instead of the bytes, a msgpack map
    {"seg": segment nonce, "pid": publisher pid, "fd": its fd of the segment, "slot": k, "gen": g,
     "off": byte offset of the array in the segment, "len": its bytes}
so topic, header, body and every non-frame topic stay as they are (docs/architecture.md "Wire format").
Only `latest` topics (frames) on ipc:// buses travel so, arrays of at least `bus.shm.min_bytes`. Who
cannot map (a tcp:// bus, a recorder) gets bytes: publishers on a tcp:// bus send bytes, and raw-mode
subscribers (recorder, `topics`, bridges) call `materialize`, which copies the bytes in and drops `shm`
from the header, so recordings never hold references.

Segments are memfd files: no name in /dev/shm, so a publisher killed by SIGKILL leaks nothing; the kernel
frees a segment once no process has it open or mapped. Subscribers open it as /proc/<pid>/fd/<fd> (the
same user only, like the runtime dir's sockets), check magic and nonce, and map it read-only.

Layout: a 4 KiB header (magic, nonce, pid, slots, stride, max_borrowed), then `slots` slots of `stride`
bytes; a slot is a 64-byte header (generation, array bytes, stored-message bytes), the message's header
and references as the publisher sent them (so the slot alone rebuilds it), then the arrays from 4 KiB
on, each 64-byte aligned.

Lifetime rules, all with OFD locks (fcntl F_OFD_SETLK: they belong to an open file description, so a
process that dies, even by SIGKILL, drops them with its descriptors):
- The publisher holds a write lock on byte 0 for the segment's life: a subscriber whose test lock on it
  succeeds knows the publisher is gone, and unmaps the segment once it holds no frame of it.
- A slot is written under a write lock on byte 1 + k; its generation is zeroed first and set last. A
  reader takes a read lock on that byte and compares the generation with the reference's, so it never
  sees pixels of another frame. A held read lock pins the slot: the publisher skips it (it never waits)
  and, with every slot pinned, sends that message's bytes inline (`full`).
- A subscriber maps a frame when it is delivered, not when it is queued. A reference whose slot was
  reused, or that is not newer than a frame already delivered, is replaced by the ring's newest frame
  (read from its slot); with none newer it is dropped (`superseded`, or `shm_stale` when the frame is
  lost): a subscriber that falls behind a faster publisher gets the newest frame, as `latest` promises.
- A subscriber process maps at most `max_borrowed` slots of one ring at once (the publisher's setting,
  written in the segment); a frame beyond that is copied out under the lock and released at once. A pin
  lasts as long as the received array (or any view of it) is alive.
- Memory per (publisher, topic) is `slots` x the frame size; a larger frame replaces the ring (up to
  `max_frame_bytes`), a larger one still goes inline.
"""

from __future__ import annotations

import errno
import fcntl
import math
import mmap
import os
import secrets
import stat
import struct
import threading
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from bus.bounded import BoundedDict
from bus.codec import DecodeError, Place
from bus.config import BusConfig, ShmConfig
from bus.logs import RateLimited, get_logger
from bus.reader_limits import SHM_MAX_SEGMENT_BYTES, SHM_MAX_SLOT_BYTES, SHM_MAX_SLOTS

MAGIC = b"VLJSHM01"
HEADER_BYTES = 4096
SLOT_HEADER = 64
DATA_OFFSET = 4096  # in a slot: its header, the message's header and references (META_MAX), then arrays
META_MAX = DATA_OFFSET - SLOT_HEADER
ALIGN = 64
PAGE = mmap.PAGESIZE
CAPACITY_STEP = 64 * 1024  # slot capacity rounds up to this, so frames of slightly varying size share a ring
MEMFD_PREFIX = "vljepa-shm:"
_HDR = struct.Struct("<8sQIIIIQQ")  # magic, nonce, pid, slots, max_borrowed, reserved, stride, data offset
_SLOT = struct.Struct("<QQI")  # generation (0: being written / empty), array bytes, stored-message bytes
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid
_REF_KEYS = frozenset(("seg", "pid", "fd", "slot", "gen", "off", "len"))
LIVE_BYTE = 0  # publisher's write lock: the segment's owner is alive
MAX_RINGS = 64  # rings one publisher keeps (topics); the least recently used is closed
MAX_SEGMENTS = 256  # segments one subscriber process keeps mapped
SWEEP_S = 0.5  # how often a subscriber process looks for segments whose publisher is gone
# A segment's size is sealed once set: nobody, its publisher included, can shrink it under a subscriber's
# mapping (a read past the end of a shrunken memfd is SIGBUS). Subscribers map only segments sealed so.
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
REQUIRED_SEALS = fcntl.F_SEAL_SHRINK

log = get_logger("bus.shm")


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _lock(fd: int, kind: int, start: int) -> bool:
    """Non-blocking OFD lock of one byte; False if another description holds a conflicting lock."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, 1, 0))
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _someone_holds(fd: int, start: int) -> bool:
    """Whether another open file description holds a write lock on byte `start` (F_OFD_GETLK)."""
    out = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, start, 1, 0))
    return _FLOCK.unpack(out)[0] != fcntl.F_UNLCK


def local_bus(config: BusConfig, pub: str | None = None) -> bool:
    """Both bus endpoints are ipc://, so every subscriber shares this host (a tcp:// endpoint, even on
    loopback, may be a tunnel to another one)."""
    return (pub or config.endpoint("pub")).startswith("ipc://") and config.endpoint("sub").startswith("ipc://")


def _address(buf: memoryview) -> int:
    return np.frombuffer(buf, np.uint8).__array_interface__["data"][0]


# -- publisher side ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Loan:
    slot: int
    address: int
    nbytes: int
    array: np.ndarray


class ShmRing:
    """One (publisher, topic) ring: `slots` slots of `capacity` bytes in a memfd segment."""

    def __init__(self, topic: str, slots: int, capacity: int, max_borrowed: int) -> None:
        self.slots = slots
        self.capacity = capacity
        self.stride = _round_up(DATA_OFFSET + capacity, PAGE)
        self.size = HEADER_BYTES + slots * self.stride
        self.nonce = secrets.randbits(63)
        self.pid = os.getpid()
        safe = "".join(c if c.isalnum() or c in "/_-." else "_" for c in topic[:64])
        self.fd = os.memfd_create(MEMFD_PREFIX + safe, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, self.size)  # sparse: only pages written take memory
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, SEALS)  # its size is final: no reader ever sees it shrink
            self.mm = mmap.mmap(self.fd, self.size)
            self.u8 = np.frombuffer(self.mm, np.uint8)
            self.mm[: _HDR.size] = _HDR.pack(
                MAGIC, self.nonce, self.pid, slots, max_borrowed, 0, self.stride, HEADER_BYTES
            )
            if not _lock(self.fd, fcntl.F_WRLCK, LIVE_BYTE):
                raise OSError("cannot lock a fresh shared-memory segment")
        except BaseException:
            os.close(self.fd)
            raise
        self.gen = 0
        self._next = 0
        self._loan: _Loan | None = None
        self._pending: tuple[int, int, int, int] | None = None  # placed, uncommitted: slot, gen, bytes, refs
        self.closed = False

    def _slot_offset(self, k: int) -> int:
        return HEADER_BYTES + k * self.stride

    def _acquire(self) -> int | None:
        """The next slot no reader pins, write-locked and marked empty; None if every slot is pinned."""
        for j in range(self.slots):
            k = (self._next + j) % self.slots
            if _lock(self.fd, fcntl.F_WRLCK, 1 + k):
                self._next = k + 1
                _SLOT.pack_into(self.mm, self._slot_offset(k), 0, 0, 0)  # references to its old frame go stale
                return k
        return None

    def commit(self, parts: list[Any] | None = None) -> None:
        """Publish the placed slot: its generation set last, then unlocked. With the message's `parts`
        (every buffer a reference) the slot also keeps its header and references, so that a subscriber
        holding an overwritten reference can take this newer frame instead."""
        if self._pending is None:
            return
        k, gen, nbytes, n_refs = self._pending
        self._pending = None
        start = self._slot_offset(k)
        meta = b""
        if parts is not None and len(parts) - 2 == n_refs:
            meta = msgpack.packb([bytes(parts[1]), [bytes(p) for p in parts[2:]]])
            if len(meta) > META_MAX:
                meta = b""
            else:
                self.mm[start + SLOT_HEADER : start + SLOT_HEADER + len(meta)] = meta
        _SLOT.pack_into(self.mm, start, gen, nbytes, len(meta))
        _lock(self.fd, fcntl.F_UNLCK, 1 + k)

    def _ref(self, k: int, gen: int, off: int, nbytes: int) -> bytes:
        return msgpack.packb(
            {"seg": self.nonce, "pid": self.pid, "fd": self.fd, "slot": k, "gen": gen, "off": off, "len": nbytes}
        )

    def loan(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """A writable array in a free slot (write-locked until published); None if every slot is pinned."""
        self.abandon()
        nbytes = math.prod(shape) * dtype.itemsize
        k = self._acquire()
        if k is None:
            return None
        off = self._slot_offset(k) + DATA_OFFSET
        arr = self.u8[off : off + nbytes].view(dtype).reshape(shape)
        self._loan = _Loan(k, arr.__array_interface__["data"][0], nbytes, arr)
        return arr

    def abandon(self) -> None:
        """Give back an unpublished loan (its slot stays empty)."""
        loan, self._loan = self._loan, None
        if loan is not None:
            _lock(self.fd, fcntl.F_UNLCK, 1 + loan.slot)

    def place(self, buffers: list[memoryview], big: list[int]) -> dict[int, bytes] | None:
        """Put buffers `big` in one slot (the loaned one if a buffer is the loan: no copy); their refs.
        The slot stays write-locked until `commit`."""
        self.commit()  # a message placed whose send failed: nobody holds a reference to it
        loan = self._loan
        first: int | None = None
        if loan is not None:
            for i in big:
                if buffers[i].nbytes == loan.nbytes and _address(buffers[i]) == loan.address:
                    first = i
                    break
        if first is not None:
            self._loan = None
            loan.array.flags.writeable = False  # published: the frame is the subscribers' now
            k = loan.slot
            base = self._slot_offset(k) + DATA_OFFSET
            offsets = {first: base}
            cursor = base + _round_up(loan.nbytes, ALIGN)
        else:
            k = self._acquire()
            if k is None:
                return None
            offsets = {}
            cursor = self._slot_offset(k) + DATA_OFFSET
        end = self._slot_offset(k) + self.stride
        for i in big:
            if i in offsets:
                continue
            n = buffers[i].nbytes
            if cursor + n > end:
                continue  # does not fit beside a loan: this one goes inline
            self.u8[cursor : cursor + n] = np.frombuffer(buffers[i], np.uint8)
            offsets[i] = cursor
            cursor += _round_up(n, ALIGN)
        self.gen += 1
        self._pending = (k, self.gen, cursor - self._slot_offset(k) - DATA_OFFSET, len(offsets))
        return {i: self._ref(k, self.gen, off, buffers[i].nbytes) for i, off in offsets.items()}

    def place_all(self, buffers: list[memoryview]) -> dict[int, bytes] | None:
        """`place` and `commit` for every buffer: an encode hook for a ring on its own (tests, benchmarks)."""
        refs = self.place(buffers, list(range(len(buffers))))
        self.commit()
        return refs

    def close(self) -> None:
        """Release the segment: subscribers unmap it once they hold none of its frames."""
        if self.closed:
            return
        self.closed = True
        self._loan = self._pending = None
        try:
            _lock(self.fd, fcntl.F_UNLCK, LIVE_BYTE)  # even if a loaned array keeps the mapping alive
        except OSError:
            pass
        del self.u8
        try:
            self.mm.close()
        except BufferError:  # a loaned array is still alive: the mapping goes with it
            pass
        os.close(self.fd)


@dataclass
class ShmPublisher:
    """A publisher's rings, one per `latest` topic, at most MAX_RINGS; `stats` counts what went where."""

    config: BusConfig
    stats: Counter = field(default_factory=Counter)  # sent, full, oversize, rings

    def __post_init__(self) -> None:
        self.shm: ShmConfig = self.config.shm
        self._rings: BoundedDict[str, ShmRing] = BoundedDict(MAX_RINGS, on_evict=lambda _t, ring: ring.close())
        self._placers: BoundedDict[str, Place | None] = BoundedDict(1024)
        self._pending: ShmRing | None = None  # the ring `place` used for the message being encoded
        self._log = RateLimited(5.0)

    def placer(self, topic: str) -> Place | None:
        """The `place` hook for codec.encode on `topic`, or None (not a `latest` topic)."""
        if topic in self._placers:
            return self._placers.get(topic)
        fn = (lambda buffers: self.place(topic, buffers)) if self.config.policy(topic) == "latest" else None
        self._placers[topic] = fn
        return fn

    def _ring(self, topic: str, nbytes: int) -> ShmRing:
        ring = self._rings.get(topic)
        if ring is None or ring.capacity < nbytes:
            if ring is not None:
                ring.close()
            capacity = min(_round_up(nbytes, CAPACITY_STEP), _round_up(self.shm.max_frame_bytes, ALIGN))
            ring = self._rings[topic] = ShmRing(topic, self.shm.slots, capacity, self.shm.max_borrowed)
            self.stats["rings"] += 1
        return ring

    def place(self, topic: str, buffers: list[memoryview]) -> dict[int, bytes] | None:
        big = [i for i, b in enumerate(buffers) if b.nbytes >= self.shm.min_bytes and b.nbytes]
        if not big:
            return None
        total = sum(_round_up(buffers[i].nbytes, ALIGN) for i in big)
        if total > self.shm.max_frame_bytes:
            self.stats["oversize"] += 1
            return None
        ring = self._ring(topic, total)
        refs = ring.place(buffers, big)
        if refs is not None:
            self._pending = ring
        if refs is None:
            self.stats["full"] += 1
            suppressed = self._log.should_log(("full", topic))
            if suppressed is not None:
                log.warning(
                    "every shared-memory slot is pinned by subscribers: sending bytes inline",
                    topic=topic,
                    slots=self.shm.slots,
                    suppressed=suppressed,
                )
            return None
        self.stats["sent"] += 1
        return refs

    def commit(self, parts: list[Any] | None) -> None:
        """After encode: the placed slot becomes readable, with the encoded message stored beside it."""
        ring, self._pending = self._pending, None
        if ring is not None and not ring.closed:
            ring.commit(parts)

    def loan(self, topic: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        nbytes = math.prod(shape) * dtype.itemsize
        if self.placer(topic) is None or not self.shm.min_bytes <= nbytes <= self.shm.max_frame_bytes or not nbytes:
            return None
        arr = self._ring(topic, nbytes).loan(shape, dtype)
        if arr is None:
            self.stats["full"] += 1
        return arr

    def close(self) -> None:
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()


# -- subscriber side --------------------------------------------------------------------------------------


class _Segment:
    """One publisher's ring as this process maps it (read-only)."""

    __slots__ = ("key", "fd", "mm", "u8", "slots", "stride", "max_borrowed", "pins", "dead")

    def __init__(self, key: tuple[int, int], fd: int, mm: mmap.mmap, slots: int, stride: int, max_borrowed: int):
        self.key = key
        self.fd = fd
        self.mm = mm
        self.u8 = np.frombuffer(mm, np.uint8)
        self.slots = slots
        self.stride = stride
        self.max_borrowed = max_borrowed
        self.pins: dict[int, int] = {}  # slot -> live arrays of this process over it (read lock held while > 0)
        self.dead = False

    def close(self) -> bool:
        del self.u8
        try:
            self.mm.close()
        except BufferError:
            self.u8 = np.frombuffer(self.mm, np.uint8)
            return False
        os.close(self.fd)
        return True


class Stale(DecodeError):
    """A reference whose slot holds another frame now (`shm_stale`). `superseded`: this subscriber has
    already delivered a newer frame of the ring; `newer`: the ring's newest frame as parts, to decode
    instead (a lagging subscriber sees a newer frame rather than nothing)."""

    def __init__(self, detail: str, superseded: bool = False) -> None:
        super().__init__("shm_stale", detail)
        self.superseded = superseded
        self.newer: list[Any] | None = None


def _unavailable(detail: str) -> DecodeError:
    return DecodeError("shm_unavailable", detail)


def _part_bytes(part: Any) -> bytes:
    return part.bytes if isinstance(part, zmq.Frame) else bytes(part)


def _parse_ref(raw: bytes) -> dict[str, int]:
    if len(raw) > 256:
        raise DecodeError("bad_buffer", "shared-memory reference longer than 256 bytes")
    try:
        ref = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise DecodeError("bad_buffer", f"shared-memory reference is not msgpack ({type(exc).__name__})") from exc
    if type(ref) is not dict or ref.keys() != _REF_KEYS or any(type(v) is not int or v < 0 for v in ref.values()):
        raise DecodeError(
            "bad_buffer", f"shared-memory reference must be a map of non-negative ints {sorted(_REF_KEYS)}"
        )
    return ref


class Mapper:
    """This process's view of other processes' rings: maps segments, pins slots, unmaps dead ones.

    One per process (`mapper()`): OFD locks of one description merge, so pins are counted here, for every
    subscriber of the process together."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # finalizers of received arrays may run on any thread
        self._segments: dict[tuple[int, int], _Segment] = {}
        self._sweeper: threading.Thread | None = None
        self._wake = threading.Event()
        self.stats: Counter = Counter()  # mapped, unmapped, pinned, copied, stale, unavailable

    # -- references -> buffers

    def resolve(
        self, parts: Sequence[Any], refs: Any, copy: bool = False, seen: BoundedDict | None = None
    ) -> list[Any]:
        """`parts` with each reference part (buffer index in `refs`) replaced by a read-only uint8 array
        over the slot (pinned while alive) or, with `copy` or beyond `max_borrowed`, by its bytes.

        `seen` (a subscriber's newest delivered generation per ring) turns a reference older than that into
        a superseded `Stale`, and a stale one into a `Stale` carrying the ring's newest frame."""
        n_buffers = len(parts) - 2
        if type(refs) is not list or not refs or len(refs) > n_buffers:
            raise DecodeError("bad_buffer", "header 'shm' must be a non-empty list of buffer indices")
        if len(set(refs)) != len(refs) or not all(type(i) is int and 0 <= i < n_buffers for i in refs):
            raise DecodeError("bad_buffer", f"header 'shm' must name distinct buffer parts: {refs[:8]!r}")
        out = list(parts)
        with self._lock:
            parsed = [(i, _parse_ref(_part_bytes(parts[2 + i]))) for i in refs]
            first = parsed[0][1]
            key = (first["pid"], first["seg"])
            last = seen.get(key, 0) if seen is not None else 0
            if first["gen"] <= last:
                raise Stale(f"generation {first['gen']} <= {last} delivered already", superseded=True)
            try:
                for i, ref in parsed:
                    out[2 + i] = self._take(self._segment(ref), ref, copy)
            except Stale as exc:
                out.clear()  # frames taken so far are released now, not with the traceback
                if seen is not None:
                    seg = self._segments.get(key)
                    exc.newer = None if seg is None else self._newest(seg, parts[0], max(first["gen"], last))
                raise
            if seen is not None:
                seen[key] = first["gen"]
        return out

    def newest(self, key: tuple[int, int], topic: Any, after: int) -> list[Any] | None:
        """The newest frame after generation `after` of a ring this process maps, as parts (or None)."""
        with self._lock:
            seg = self._segments.get(key)
            return None if seg is None else self._newest(seg, topic, after)

    def _newest(self, seg: _Segment, topic: Any, after: int) -> list[Any] | None:
        """The ring's newest frame after generation `after` that its publisher stored whole, as parts."""
        gens = []
        for k in range(seg.slots):
            gen = _SLOT.unpack_from(seg.mm, HEADER_BYTES + k * seg.stride)[0]
            if gen > after:
                gens.append((gen, k))
        for gen, k in sorted(gens, reverse=True):
            start = HEADER_BYTES + k * seg.stride
            held = seg.pins.get(k, 0)
            if not held and not _lock(seg.fd, fcntl.F_RDLCK, 1 + k):
                continue  # being rewritten
            try:
                now, _n, meta_len = _SLOT.unpack_from(seg.mm, start)
                if now != gen or not 0 < meta_len <= META_MAX:
                    continue
                meta = seg.mm[start + SLOT_HEADER : start + SLOT_HEADER + meta_len]
            finally:
                if not held:
                    _lock(seg.fd, fcntl.F_UNLCK, 1 + k)
            try:
                header, refs = msgpack.unpackb(meta)
            except Exception:
                continue
            if type(header) is bytes and type(refs) is list and all(type(r) is bytes for r in refs):
                return [topic, header, *refs]
        return None

    def _segment(self, ref: dict[str, int]) -> _Segment:
        key = (ref["pid"], ref["seg"])
        seg = self._segments.get(key)
        if seg is not None:
            return seg
        if len(self._segments) >= MAX_SEGMENTS:
            self._sweep(evict_idle=True)
            if len(self._segments) >= MAX_SEGMENTS:
                raise _unavailable(f"{MAX_SEGMENTS} segments mapped, all holding frames")
        path = f"/proc/{ref['pid']}/fd/{ref['fd']}"
        try:
            is_segment = os.readlink(path).startswith("/memfd:" + MEMFD_PREFIX)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK) if is_segment else -1
        except OSError as exc:  # publisher gone, another pid namespace, or another user's process
            self.stats["unavailable"] += 1
            raise _unavailable(f"cannot open {path}: {exc.strerror}") from None
        if fd < 0:
            self.stats["unavailable"] += 1
            raise _unavailable(f"{path} is not a bus segment")
        try:
            st = os.fstat(fd)
            head = os.pread(fd, _HDR.size, 0)
            if not stat.S_ISREG(st.st_mode) or len(head) < _HDR.size:
                raise _unavailable(f"{path} is not a bus segment")
            try:
                seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            except OSError:  # not a memfd (or a file system without seals)
                seals = 0
            if seals & REQUIRED_SEALS != REQUIRED_SEALS:
                raise _unavailable(f"{path} is not sealed against shrinking (a foreign segment)")
            magic, nonce, _pid, slots, max_borrowed, _r, stride, data_off = _HDR.unpack(head)
            if magic != MAGIC or nonce != ref["seg"] or data_off != HEADER_BYTES:
                raise _unavailable(f"{path} is another segment than the reference's (its ring was replaced)")
            size = data_off + slots * stride
            if not (
                0 < slots <= SHM_MAX_SLOTS
                and DATA_OFFSET < stride <= SHM_MAX_SLOT_BYTES
                and stride % PAGE == 0
                and 0 <= max_borrowed <= slots
                and size <= min(st.st_size, SHM_MAX_SEGMENT_BYTES)
            ):
                raise _unavailable(
                    f"{path} declares {slots} slots of {stride} bytes ({max_borrowed} borrowed) in {st.st_size} "
                    f"bytes: outside {SHM_MAX_SLOTS} slots of at most {SHM_MAX_SLOT_BYTES} bytes"
                )
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            self.stats["unavailable"] += 1
            raise
        seg = self._segments[key] = _Segment(key, fd, mm, slots, stride, max_borrowed)
        self.stats["mapped"] += 1
        if self._sweeper is None or not self._sweeper.is_alive():
            self._sweeper = threading.Thread(target=self._sweep_loop, name="bus-shm-sweeper", daemon=True)
            self._sweeper.start()
        return seg

    def _take(self, seg: _Segment, ref: dict[str, int], copy: bool) -> Any:
        k, off, n = ref["slot"], ref["off"], ref["len"]
        start = HEADER_BYTES + k * seg.stride
        if k >= seg.slots or off < start + DATA_OFFSET or off + n > start + seg.stride:
            raise DecodeError("bad_buffer", f"shared-memory reference outside slot {k} of its segment")
        held = seg.pins.get(k, 0)
        if copy or (not held and len(seg.pins) >= seg.max_borrowed):
            if not held and not _lock(seg.fd, fcntl.F_RDLCK, 1 + k):
                raise self._stale(k, "being rewritten")
            try:  # a slot this process pins is locked already: copy under that lock
                if _SLOT.unpack_from(seg.mm, start)[0] != ref["gen"]:
                    raise self._stale(k, "overwritten")
                data = seg.u8[off : off + n].tobytes()  # the copy, under the lock
            finally:
                if not held:
                    _lock(seg.fd, fcntl.F_UNLCK, 1 + k)
            self.stats["copied"] += 1
            return data
        if not held and not _lock(seg.fd, fcntl.F_RDLCK, 1 + k):
            raise self._stale(k, "being rewritten")
        seg.pins[k] = held + 1  # before anything that may run a finalizer of another view of this slot
        try:
            if _SLOT.unpack_from(seg.mm, start)[0] != ref["gen"]:
                raise self._stale(k, "overwritten")
            view = seg.u8[off : off + n]
            weakref.finalize(view, self._unpin, seg, k)
        except BaseException:
            self._unpin(seg, k)
            raise
        self.stats["pinned"] += 1
        return view

    def _stale(self, k: int, why: str) -> Stale:
        self.stats["stale"] += 1
        return Stale(f"slot {k} {why} before this reference was read")

    def _unpin(self, seg: _Segment, k: int) -> None:
        with self._lock:
            held = seg.pins.get(k, 0) - 1
            if held > 0:
                seg.pins[k] = held
                return
            seg.pins.pop(k, None)
            if seg.key in self._segments:
                try:
                    _lock(seg.fd, fcntl.F_UNLCK, 1 + k)
                except OSError:
                    pass

    # -- unmapping

    def _sweep_loop(self) -> None:
        while True:
            self._wake.wait(SWEEP_S)
            self._wake.clear()
            with self._lock:
                self._sweep()
                if not self._segments:
                    self._sweeper = None
                    return

    def _sweep(self, evict_idle: bool = False) -> None:
        """Unmap segments whose publisher let go of them (died, closed or replaced the ring) and that hold
        no frame here; with `evict_idle`, also live ones holding none (the mapping cache is full)."""
        for key, seg in list(self._segments.items()):
            if not seg.dead:
                try:
                    seg.dead = not _someone_holds(seg.fd, LIVE_BYTE)
                except OSError:
                    seg.dead = True
            if (seg.dead or evict_idle) and not seg.pins and seg.close():
                del self._segments[key]
                self.stats["unmapped"] += 1

    def sweep_now(self) -> None:
        """Run one sweep at once (tests; a process that wants its memory back now)."""
        with self._lock:
            self._sweep()

    def mapped(self) -> int:
        with self._lock:
            return len(self._segments)


_mapper: Mapper | None = None
_mapper_lock = threading.Lock()


def mapper() -> Mapper:
    """The process's Mapper, created on first use."""
    global _mapper
    if _mapper is None:
        with _mapper_lock:
            if _mapper is None:
                _mapper = Mapper()
    return _mapper


def mapper_stats() -> dict[str, int]:
    """The process's Mapper counters (mapped, copied, stale, unavailable, ...); {} before any frame."""
    return dict(_mapper.stats) if _mapper is not None else {}


def resolve(parts: Sequence[Any], refs: Any) -> list[Any]:
    """codec.decode's `resolve` hook: references -> pinned read-only arrays (or copies beyond the borrow bound)."""
    return mapper().resolve(parts, refs)


class Resolver:
    """One subscriber's `resolve` hook: remembers the newest generation it delivered per ring, so that a
    subscriber that fell behind jumps to the newest frame and then drops the older references queued
    behind it as superseded (the `latest` policy, applied before the frame is even mapped)."""

    def __init__(self) -> None:
        self.seen: BoundedDict[tuple[int, int], int] = BoundedDict(MAX_SEGMENTS)

    def __call__(self, parts: Sequence[Any], refs: Any) -> list[Any]:
        return mapper().resolve(parts, refs, seen=self.seen)

    def is_ref(self, part: Any) -> bool:
        """Whether a message's only buffer looks like a reference (a 7-entry msgpack map, tens of bytes):
        such a message is decoded when delivered (a false positive is merely decoded later)."""
        return len(part) <= 128 and _part_bytes(part)[:1] == b"\x87"

    def precheck(self, parts: Sequence[Any]) -> list[Any] | None:
        """Before decoding a message whose only buffer may be a reference: None to decode it as it is;
        for a reference not newer than a frame this subscriber delivered, the ring's newest frame as parts
        (a frame arrived since: deliver that one), or [] (nothing newer: drop it as superseded). So a
        subscriber that fell behind a faster publisher delivers the newest frame at each message it reads
        instead of wading through the references queued behind it. (A buffer that merely looks like such
        a reference can only be a forged one: what happens to it costs its sender alone.)"""
        part = parts[2]
        if len(parts) != 3 or len(part) > 128 or not self.seen:
            return None
        raw = _part_bytes(part)
        if raw[:1] != b"\x87":  # a msgpack map of 7 entries, as every reference
            return None
        try:
            ref = msgpack.unpackb(raw)
        except Exception:
            return None
        if type(ref) is not dict or ref.keys() != _REF_KEYS or type(ref["gen"]) is not int:
            return None
        key = (ref["pid"], ref["seg"])
        last = self.seen.get(key)
        if last is None or ref["gen"] > last:
            return None
        return mapper().newest(key, parts[0], last) or []


def materialize(parts: list[Any], allowed: bool = True) -> list[Any]:
    """Raw parts with every reference replaced by its bytes and `shm` dropped from the header: what a
    recorder writes and a bridge forwards. Parts without references come back as they are. With
    `allowed` False (a subscriber that may not map: not on ipc://) references are a `bad_buffer` reject."""
    if len(parts) < 3:
        return parts
    raw = _part_bytes(parts[1])
    if b"\xa3shm" not in raw:  # no "shm" key anywhere in the header: the usual case, without unpacking it
        return parts
    try:
        header = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise DecodeError("bad_header", f"header is not msgpack ({type(exc).__name__})") from exc
    if type(header) is not dict or "shm" not in header:
        return parts
    if not allowed:
        raise DecodeError("bad_buffer", "buffers by shared-memory reference, and this reader maps none")
    refs = header.pop("shm")
    try:
        out = mapper().resolve(parts, refs, copy=True)
        packed = msgpack.packb(header, use_bin_type=True)
    except DecodeError:
        raise
    except Exception as exc:  # as codec.decode: nothing but a DecodeError leaves a decoder
        raise DecodeError("invalid_body", f"unresolvable ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return [parts[0], zmq.Frame(packed), *(p if isinstance(p, zmq.Frame) else zmq.Frame(p) for p in out[2:])]
