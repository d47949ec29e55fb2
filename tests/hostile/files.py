"""Hostile FILES campaign: `python -m tests.hostile.files [--cases N] [--classes A B] [--json OUT] [--short]`.

Each class of untrusted file (CLASSES below) runs in a process of its own: its bomb corpus
(tests/hostile/file_bombs.py: files that declare or inflate to GiBs) and then N cases drawn from its
hypothesis strategy (tests/hostile/file_strategies.py: a valid file with one structural mutation), each
written to disk and read by the reader the product uses. Per class it counts:

    cases         files tried (corpus + drawn)
    clear_errors  refused with the reader's own error (RecordingError, ShardError, DecodeError, ...)
    accepted      read without complaint (a mutation may leave a valid file)
    crashes       any other exception, or the class's process killed by a signal (SIGBUS, OOM)
    peak_rss_mb   the class process's peak RSS (imports included)

and exits 1 if any class crashed or went over its RSS bound (--rss-bound-mb). The limits the readers
apply are bus/reader_limits.py; docs/reliability.md "Untrusted files: limits" has the campaign's numbers.

A class is `FileClass(name, run, doc)`; `run(cases, seed, short)` returns the counts above. Other modules
add classes of the same shape by registering them here (see `register` at the end of the registry).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


@dataclass(frozen=True)
class FileClass:
    name: str
    run: Callable[[int, int, bool], dict]  # (cases, seed, short) -> {cases, clear_errors, accepted, crashes, ...}
    doc: str


class Tally:
    """Counts of one class's run; `judge` runs one case and files its outcome."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.labels: collections.Counter = collections.Counter()
        self.crash_samples: list[str] = []

    def judge(self, label: str, fn: Callable[[], bool], clear: tuple[type[BaseException], ...]) -> None:
        """`fn` returns True if it read the case without complaint, False if it refused it (a counted
        reject, a dropped line); raising one of `clear` is a clear error, anything else a crash."""
        self.counts["cases"] += 1
        self.labels[label] += 1
        try:
            ok = fn()
        except clear:
            ok = False
        except Exception as exc:  # what must never happen: counted, with a sample to debug
            self.counts["crashes"] += 1
            if len(self.crash_samples) < 5:
                self.crash_samples.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.counts["accepted" if ok else "clear_errors"] += 1

    def result(self) -> dict:
        from tests.support import peak_rss_mb

        peak = peak_rss_mb()
        return {
            "cases": self.counts["cases"],
            "clear_errors": self.counts["clear_errors"],
            "accepted": self.counts["accepted"],
            "crashes": self.counts["crashes"],
            "peak_rss_mb": round(peak, 1),
            "labels": dict(sorted(self.labels.items())),
            "crash_samples": self.crash_samples,
        }


def _drawn(strategy: Any, n: int, seed: int, batch: int = 5) -> Iterator[Any]:
    """`n` cases of `strategy`, drawn in small batches (so that the cases held at once do not count in
    the class's peak RSS)."""
    from tests.hostile.campaign import _collect  # the campaign's hypothesis driver, outside pytest

    for start in range(0, n, batch):
        yield from _collect(strategy, min(batch, n - start), seed * 1_000_003 + start)


def materialize(case: Any, path: Path) -> Path:
    """Write a FileCase to `path` (a file, a symlink, a FIFO, a directory or a sparse file)."""
    if case.kind == "symlink":
        os.symlink(case.data.decode(), path)
    elif case.kind == "fifo":
        os.mkfifo(path)
    elif case.kind == "dir":
        path.mkdir()
    elif case.kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(int(case.data))
    else:
        path.write_bytes(case.data)
    return path


def _run_files(
    cases: int, seed: int, corpus: Iterable[Any], strategy: Any, read: Callable[[Path], bool], clear: tuple
) -> dict:
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="hostile-files-") as tmp:
        for i, case in enumerate(itertools.chain(corpus, _drawn(strategy, cases, seed))):
            path = materialize(case, Path(tmp) / f"case-{i}")
            tally.judge(case.label, lambda path=path: read(path), clear)
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    return tally.result()


# -- MCAP recordings ------------------------------------------------------------------------------------------


def run_mcap(cases: int, seed: int, short: bool) -> dict:
    """`perception info` (a tolerant scan), `replay`/`export` (the indexed reader) and the metadata reader."""
    from bus.mcap_info import describe
    from bus.mcapfile import RecordingError, iter_messages, load_metadata
    from bus.reader_limits import MCAP_MAX_CHUNK_BYTES
    from tests.hostile import file_bombs as fb
    from tests.hostile.file_strategies import FileCase, mcap_files

    big = MCAP_MAX_CHUNK_BYTES + MiB if short else fb.GiB
    corpus = [
        FileCase("mcap.bomb.zstd", fb.mcap_bomb("zstd", big)),
        FileCase("mcap.bomb.lz4", fb.mcap_bomb("lz4", big)),
        FileCase("mcap.bomb.zstd_lying", fb.mcap_bomb("zstd", 64 * MiB, declared=4096)),
        FileCase("mcap.bomb.lz4_lying", fb.mcap_bomb("lz4", 64 * MiB, declared=4096)),
        FileCase("mcap.dev_zero", b"/dev/zero", "symlink"),
        FileCase("mcap.valid", fb.mcap_small("zstd")),
    ]

    def read(path: Path) -> bool:
        info = describe(path)
        load_metadata(path)
        if not info.complete:
            return False
        for _ in iter_messages(path):
            pass
        return info.damage is None

    return _run_files(cases, seed, corpus, mcap_files(), read, (RecordingError,))


# -- tar shards -----------------------------------------------------------------------------------------------


def run_tar(cases: int, seed: int, short: bool) -> dict:
    """`perception data check` and training read shards with iter_shard; each sample's .json is parsed."""
    import tarfile

    from perception.data.shards import ShardError, iter_shard
    from tests.hostile import file_bombs as fb
    from tests.hostile.file_strategies import FileCase, tar_shards

    liar = bytearray(fb.sparse_tar(1))
    corpus = [
        FileCase("tar.bomb.sparse_2GiB", fb.sparse_tar(2 * fb.GiB)),
        FileCase("tar.bomb.sparse_1TiB", fb.sparse_tar(1 << 40)),
        FileCase("tar.bomb.pax_size", _pax_size_tar()),
        FileCase("tar.bomb.dev_zero", b"/dev/zero", "symlink"),
        FileCase("tar.valid", bytes(liar)),
    ]

    def read(path: Path) -> bool:
        for _key, parts in iter_shard(path):
            if "json" in parts:
                try:
                    json.loads(parts["json"])
                except ValueError:
                    return False  # check_shards lists the sample as unreadable
        return True

    return _run_files(cases, seed, corpus, tar_shards(), read, (ShardError, tarfile.TarError, OSError))


def _pax_size_tar() -> bytes:
    import io
    import tarfile

    info = tarfile.TarInfo("000000000.mp4")
    info.size = 1
    info.pax_headers = {"size": str(1 << 40)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


# -- the world's files ----------------------------------------------------------------------------------------


def run_watch(cases: int, seed: int, short: bool) -> dict:
    """The world restoring its runtime watch file (read_file, then decode_file)."""
    from perception.nodes.watches import decode_file, read_file
    from tests.hostile.file_strategies import FileCase, watch_files

    corpus = [
        FileCase("watch.bomb.dev_zero", b"/dev/zero", "symlink"),
        FileCase("watch.bomb.sparse_4GiB", str(4 << 30).encode(), "sparse"),
        FileCase("watch.bomb.fifo", kind="fifo"),
        FileCase("watch.bomb.dir", kind="dir"),
        FileCase("watch.bomb.symlink_to_passwd", b"/etc/passwd", "symlink"),
    ]

    def read(path: Path) -> bool:
        _kept, dropped = decode_file(read_file(path))
        return not dropped

    return _run_files(cases, seed, corpus, watch_files(), read, (ValueError, OSError))


def run_persist(cases: int, seed: int, short: bool) -> dict:
    """The world restoring its memory from the persist file (read_lines: every line parsed or dropped)."""
    from perception.nodes.world_store import read_lines
    from tests.hostile.file_strategies import FileCase, persist_files

    corpus = [
        FileCase("persist.bomb.dev_zero", b"/dev/zero", "symlink"),
        FileCase("persist.bomb.fifo", kind="fifo"),
        FileCase("persist.bomb.sparse_no_newline", str(64 * MiB).encode(), "sparse"),
    ]

    def read(path: Path) -> bool:
        return all(line.record is not None for line in read_lines(path, 8))

    return _run_files(cases, seed, corpus, persist_files(), read, (ValueError, OSError))


# -- shared-memory references ---------------------------------------------------------------------------------


def run_shm(cases: int, seed: int, short: bool) -> dict:
    """Forged segments and references, decoded as a subscriber does (codec.decode with a Resolver, so a
    stale reference walks the ring). A SIGBUS would kill this process: the parent counts that as a crash."""
    from bus import shm
    from bus.codec import DecodeError
    from tests.hostile.file_strategies import ShmCase, shm_segments

    def case(label: str, slots: int, sealed: bool = True, shrink: bool = False, **kw: Any) -> ShmCase:
        page = shm.DATA_OFFSET + shm.PAGE
        base = dict(slots=slots, stride=page, max_borrowed=1, real_slots=min(slots, 2), sealed=sealed,
                    magic_ok=True, data_off=shm.HEADER_BYTES, ref={"slot": 0, "off": 0, "len": 4096, "gen": 1},
                    shrink_after=shrink)  # fmt: skip
        return ShmCase(label=label, **(base | kw))

    corpus = [
        case("shm.bomb.300000_slots", 300_000, ref={"slot": 0, "off": 0, "len": 4096, "gen": 2}),
        case("shm.bomb.unsealed_shrink", 2, sealed=False, shrink=True),
        case("shm.bomb.sealed_shrink", 2, shrink=True),
        case("shm.bomb.huge_stride", 8, stride=2**32 - 4096),
        case("shm.bomb.borrow_over_slots", 2, max_borrowed=2**31),
    ]
    resolver = shm.Resolver()
    tally = Tally()
    for c in itertools.chain(corpus, _drawn(shm_segments(), cases, seed)):
        tally.judge(c.label, lambda c=c: _shm_attack(c, resolver), (DecodeError,))
        shm.mapper().sweep_now()
    return tally.result()


def _shm_attack(c: Any, resolver: Any) -> bool:
    import fcntl
    import struct

    import msgpack
    import numpy as np

    from benchmarks.bus.messages import Blob
    from bus import shm
    from bus.codec import decode, encode

    flags = os.MFD_CLOEXEC | (os.MFD_ALLOW_SEALING if c.sealed else 0)
    fd = os.memfd_create(shm.MEMFD_PREFIX + "frames/hostile", flags)
    try:
        os.ftruncate(fd, min(shm.HEADER_BYTES + c.real_slots * c.stride, 1 << 36))  # sparse
        nonce = int.from_bytes(os.urandom(7), "little")  # a fresh ring each case (a subscriber remembers gens)
        magic = shm.MAGIC if c.magic_ok else b"NOTSHM01"
        os.pwrite(fd, shm._HDR.pack(magic, nonce, os.getpid(), c.slots, c.max_borrowed, 0, c.stride, c.data_off), 0)
        os.pwrite(fd, struct.pack("<QQI", 1, 4096, 0), shm.HEADER_BYTES)  # slot 0: generation 1
        if c.sealed:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, shm.SEALS)
        start = shm.HEADER_BYTES + c.ref["slot"] * c.stride
        ref = {"seg": nonce, "pid": os.getpid(), "fd": fd, "slot": c.ref["slot"], "gen": c.ref["gen"],
               "off": start + shm.DATA_OFFSET + c.ref["off"], "len": c.ref["len"]}  # fmt: skip
        parts = encode("frames/hostile", Blob(label="0", data=np.zeros(4096, np.uint8)), seq=0, src="forger",
                       t_ns=0, place=lambda _b: {0: msgpack.packb(ref)})  # fmt: skip
        msg = decode(parts, resolve=resolver).msg
        if c.shrink_after:
            try:
                os.ftruncate(fd, 4096)
            except OSError:
                pass  # sealed: not even its owner can
        int(np.asarray(msg.data).sum())  # every byte read: SIGBUS here if a shrunken segment were mapped
        del msg
        return True
    finally:
        os.close(fd)


# -- the registry -----------------------------------------------------------------------------------------------

CLASSES: dict[str, FileClass] = {}


def register(cls: FileClass) -> None:
    CLASSES[cls.name] = cls


register(FileClass("mcap", run_mcap, "MCAP recordings: chunks (zstd, lz4, none), records, summary, metadata"))
register(FileClass("tar_shard", run_tar, "WebDataset tar shards: member sizes (real and sparse), PAX headers"))
register(FileClass("watch_file", run_watch, "the world's runtime watch file: size, symlinks, JSON"))
register(FileClass("persist_file", run_persist, "the world's persist file: lines, symlinks, devices"))
register(FileClass("shm_segment", run_shm, "shared-memory segments and references from a same-host forger"))


def _config_class(name: str) -> Callable[[int, int, bool], dict]:
    """A class of tests/hostile/files_config.py (YAML configs, checkpoint directories) in this runner's shape."""

    def run(cases: int, seed: int, short: bool) -> dict:
        from tests.hostile.files_config import RUNNERS

        return RUNNERS[name](cases, seed)

    return run


register(FileClass("yaml_config", _config_class("yaml_config"), "YAML configs: aliases, bounds, hf_config, packages"))
register(
    FileClass("checkpoint_dir", _config_class("checkpoint_dir"), "checkpoint dirs: config.json, safetensors headers")
)


# -- running ----------------------------------------------------------------------------------------------------


def run_class(name: str, cases: int, seed: int, short: bool, timeout: float) -> dict:
    """One class in a process of its own (its peak RSS is its own; a signal that kills it is a crash)."""
    from tests.support import child_env

    argv = [sys.executable, "-m", "tests.hostile.files", "--one", name, "--cases", str(cases), "--seed", str(seed)]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            argv + (["--short"] if short else []), cwd=REPO, env=child_env(), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"cases": 0, "clear_errors": 0, "accepted": 0, "crashes": 1, "peak_rss_mb": 0.0,
                "crash_samples": [f"timed out after {timeout} s"], "wall_s": timeout}  # fmt: skip
    wall = round(time.monotonic() - t0, 2)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"cases": cases, "clear_errors": 0, "accepted": 0, "crashes": 1, "peak_rss_mb": 0.0,
                "crash_samples": [f"{why}: {proc.stderr[-600:]}"], "wall_s": wall}  # fmt: skip
    return json.loads(lines[-1]) | {"wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=500, help="drawn cases per class (the bomb corpus comes on top)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", nargs="+", default=None, help=f"a subset of {sorted(CLASSES)}")
    p.add_argument("--short", action="store_true", help="smaller bombs (just over each limit): the make test size")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--rss-bound-mb", type=float, default=1024.0, help="a class over this peak RSS fails")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per class")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # run one class here, print its JSON
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(CLASSES[args.one].run(args.cases, args.seed, args.short)), flush=True)
        return 0
    names = args.classes or list(CLASSES)
    unknown = sorted(set(names) - set(CLASSES))
    if unknown:
        print(f"unknown classes {unknown}; the classes are {sorted(CLASSES)}", file=sys.stderr)
        return 2
    results = {}
    print(f"{'class':14} {'cases':>6} {'clear':>6} {'accepted':>8} {'crashes':>7} {'peak MB':>8} {'wall s':>7}")
    for name in names:
        r = results[name] = run_class(name, args.cases, args.seed, args.short, args.timeout)
        print(f"{name:14} {r['cases']:6} {r['clear_errors']:6} {r['accepted']:8} {r['crashes']:7} "
              f"{r['peak_rss_mb']:8.1f} {r['wall_s']:7.1f}", flush=True)  # fmt: skip
        for sample in r.get("crash_samples", []):
            print(f"    crash: {sample}")
    ok = all(r["crashes"] == 0 and r["peak_rss_mb"] <= args.rss_bound_mb for r in results.values())
    doc = {
        "ok": ok,
        "cases_per_class": args.cases,
        "seed": args.seed,
        "short": args.short,
        "rss_bound_mb": args.rss_bound_mb,
        "command": "python -m tests.hostile.files " + " ".join(argv if argv is not None else sys.argv[1:]),
        "classes": results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    print("ok" if ok else "FAILED: a class crashed or went over its RSS bound")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
