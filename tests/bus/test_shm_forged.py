"""Issue 32: a forged shared-memory segment is a counted reject, never a signal nor a memory bomb.

A hostile same-host publisher (tests/bus/shm_peer.py `forge`, a real process) makes a segment by hand and
sends a reference to it; the subscriber side (`victim`, another real process) decodes it:
- unsealed, then shrunk after the reference (before: the subscriber died of SIGBUS on the next read):
  refused at once, `shm_unavailable`, nothing mapped;
- sealed as our publishers seal (F_SEAL_SHRINK|GROW|SEAL): the shrink itself fails (EPERM), the frame reads;
- 300,000 slots in its header (before: every slot walked, 1.23 GB RSS): refused from the header alone.
"""

from __future__ import annotations

import errno
import json
import subprocess

import numpy as np
import pytest

from benchmarks.bus.messages import Blob
from bus import shm
from bus.codec import DecodeError, decode, encode
from bus.reader_limits import SHM_MAX_SLOTS
from tests.bus.conftest import spawn, stop

RSS_BOUND_MB = 400


class Proc:
    def __init__(self, *args: str) -> None:
        self.proc = spawn("-m", "tests.bus.shm_peer", *args, stdin=subprocess.PIPE)

    def expect(self, word: str, timeout: float = 60.0) -> str:
        line = self.proc.stdout.readline()  # each peer answers at once; a dead one gives ""
        if not line.startswith(word):
            self.proc.kill()
            raise AssertionError(f"peer said {line!r}, expected {word!r} (exit {self.proc.wait(timeout)}): "
                                 f"{self.proc.stderr.read()[-2000:]}")  # fmt: skip
        return line[len(word) :].strip()

    def say(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


@pytest.fixture
def procs():
    made: list[Proc] = []
    yield lambda *args: made.append(Proc(*args)) or made[-1]
    for p in made:
        stop(p.proc)


def attack(procs, *forge_args: str) -> tuple[str, str, str]:
    """(the victim's verdict, the forger's shrink result, the victim's touch line)."""
    forger = procs("forge", "--topic", "frames/forged", *forge_args)
    ref = forger.expect("ref ")
    victim = procs("victim", "--topic", "frames/forged", "--ref", ref)
    verdict = victim.proc.stdout.readline().strip()
    forger.say("shrink")
    shrunk = forger.expect("shrunk ")
    victim.say("touch")
    touched = victim.expect("touched ")
    assert victim.proc.poll() is None, "the victim died"
    return verdict, shrunk, touched


def test_an_unsealed_segment_is_refused_and_its_shrink_harms_nobody(procs):
    verdict, shrunk, touched = attack(procs)
    assert verdict.startswith("reject shm_unavailable") and "not sealed" in verdict, verdict
    assert shrunk == "ok"  # the forger could shrink it: that is why it is refused
    assert touched.split()[0] == "-1"  # nothing was mapped to read


def test_a_sealed_segment_cannot_shrink_under_a_reader(procs):
    verdict, shrunk, touched = attack(procs, "--seal")
    assert verdict == "mapped"
    assert shrunk == str(errno.EPERM)  # F_SEAL_SHRINK: not even its owner can
    assert touched.split()[0] == "0"  # the frame (zeros) read whole, no SIGBUS


def test_a_segment_declaring_300000_slots_is_refused_from_its_header(procs):
    verdict, _shrunk, touched = attack(procs, "--seal", "--slots", "300000")
    assert verdict.startswith("reject shm_unavailable") and f"outside {SHM_MAX_SLOTS} slots" in verdict, verdict
    assert float(touched.split()[1]) < RSS_BOUND_MB


def test_our_own_segments_are_sealed():
    import fcntl

    ring = shm.ShmRing("frames/sealed", slots=2, capacity=4096, max_borrowed=1)
    try:
        assert fcntl.fcntl(ring.fd, fcntl.F_GET_SEALS) & shm.SEALS == shm.SEALS
        with pytest.raises(PermissionError):
            import os

            os.ftruncate(ring.fd, 4096)
        parts = encode("frames/sealed", Blob(label="0", data=np.ones(4096, np.uint8)), seq=0, src="a", t_ns=0,
                       place=ring.place_all)  # fmt: skip
        assert int(decode(parts, resolve=shm.resolve).msg.data.sum()) == 4096
    finally:
        ring.close()


def test_forged_references_count_as_rejects_in_a_subscriber(procs):
    """Through the Subscriber's own decode path: the reject lands in its `bad` counter by reason."""
    forger = procs("forge", "--topic", "frames/forged")
    ref = json.loads(forger.expect("ref "))
    import msgpack

    parts = encode("frames/forged", Blob(label="0", data=np.zeros(ref["len"], np.uint8)), seq=0, src="v", t_ns=0,
                   place=lambda _b: {0: msgpack.packb(ref)})  # fmt: skip
    with pytest.raises(DecodeError) as err:
        decode(parts, resolve=shm.Resolver())
    assert err.value.reason == "shm_unavailable"
