"""`python -m benchmarks.bus.shm_eval [--json OUT]`: bus/shm.py's ring against iceoryx2, on what the bus needs
from a shared-memory backend once the header travels on ZeroMQ anyway (docs/bus.md "Same-host frames").

1. data path per frame, no notification, one process: the publisher's loan + publish and the subscriber's
   receive + release (ring: loan, place, commit, resolve with a pin, drop; iceoryx2: loan_slice_uninit,
   send, receive, drop), microseconds per frame at 1 MB and 6 MB;
2. shared memory a 6 MB topic reserves (the publisher's segment size);
3. what a publisher killed by SIGKILL leaves in /dev/shm.

The end-to-end figures (two processes, with notification) are the `shm-ring` and `iceoryx2` rows of
`perception bench bus`. iceoryx2 rows appear only when `pip install iceoryx2` was run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from bus import shm

SIZES = [1 << 20, 1920 * 1080 * 3]
N = 2000

IOX_CHILD = """
import ctypes, sys, time
import iceoryx2 as iox
iox.set_log_level_from_env_or(iox.LogLevel.Error)
node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
svc = (node.service_builder(iox.ServiceName.new(sys.argv[1])).publish_subscribe(iox.Slice[ctypes.c_uint8])
       .open_or_create())
pub = svc.publisher_builder().initial_max_slice_len(int(sys.argv[2])).create()
pub.loan_slice_uninit(int(sys.argv[2])).assume_init().send()
print("up", flush=True)
time.sleep(60)
"""

RING_CHILD = """
import sys, time
from bus import shm
ring = shm.ShmRing("frames/eval", slots=8, capacity=int(sys.argv[2]), max_borrowed=2)
print("up", flush=True)
time.sleep(60)
"""


def ring_data_path(size: int) -> float:
    ring = shm.ShmRing("frames/eval", slots=8, capacity=size, max_borrowed=2)
    resolver = shm.Resolver()
    try:
        t0 = time.perf_counter()
        for _ in range(N):
            arr = ring.loan((size,), np.dtype(np.uint8))
            ref = ring.place([memoryview(arr)], [0])[0]
            ring.commit()
            view = resolver([b"", b"", ref], [0])[2]
            del view, arr
        return (time.perf_counter() - t0) / N * 1e6
    finally:
        ring.close()


def iox_data_path(size: int) -> float:
    import iceoryx2 as iox

    iox.set_log_level_from_env_or(iox.LogLevel.Error)
    node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
    svc = (
        node.service_builder(iox.ServiceName.new(f"eval-{os.getpid()}-{size}"))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .open_or_create()
    )
    pub = svc.publisher_builder().initial_max_slice_len(size).create()
    sub = svc.subscriber_builder().create()
    t0 = time.perf_counter()
    for _ in range(N):
        pub.loan_slice_uninit(size).assume_init().send()
        sample = sub.receive()
        view = sample.payload().as_memory_view()
        del view, sample
    return (time.perf_counter() - t0) / N * 1e6


def after_sigkill(code: str, size: int) -> tuple[int, list[str]]:
    """Run `code` as a child that creates a publisher, SIGKILL it; the bytes and files it left in /dev/shm."""
    before = set(os.listdir("/dev/shm"))
    child = subprocess.Popen(
        [sys.executable, "-c", code, f"eval-kill-{os.getpid()}", str(size)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "up"
        reserved = sum(os.path.getsize(f"/dev/shm/{n}") for n in set(os.listdir("/dev/shm")) - before)
        if not reserved:  # a memfd: no name, its size is that of the fd
            for fd in os.listdir(f"/proc/{child.pid}/fd"):
                if os.readlink(f"/proc/{child.pid}/fd/{fd}").startswith("/memfd:" + shm.MEMFD_PREFIX):
                    reserved = os.stat(f"/proc/{child.pid}/fd/{fd}").st_size
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    time.sleep(0.2)
    return reserved, sorted(set(os.listdir("/dev/shm")) - before)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json", dest="json_out")
    args = p.parse_args()
    try:
        import iceoryx2  # noqa: F401

        have_iox = True
    except ImportError:
        have_iox = False
    rows = []
    for size in SIZES:
        row = {"size": size, "ring_us": round(ring_data_path(size), 1)}
        if have_iox:
            row["iceoryx2_us"] = round(iox_data_path(size), 1)
        rows.append(row)
    ring_bytes, ring_left = after_sigkill(RING_CHILD, SIZES[-1])
    out = {"data_path_us_per_frame": rows, "ring": {"reserved_bytes": ring_bytes, "left_after_sigkill": ring_left}}
    if have_iox:
        import iceoryx2 as iox

        iox_bytes, iox_left = after_sigkill(IOX_CHILD, SIZES[-1])
        iox.NodeBuilder.new().create(iox.ServiceType.Ipc).try_cleanup_dead_nodes()  # a later node cleans up
        left = [n for n in iox_left if os.path.exists(f"/dev/shm/{n}")]
        out["iceoryx2"] = {"reserved_bytes": iox_bytes, "left_after_sigkill": iox_left, "left_after_cleanup": left}
    print("| size | ring us/frame | iceoryx2 us/frame |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['ring_us']} | {r.get('iceoryx2_us', '-')} |")
    for name in ("ring", "iceoryx2"):
        if name in out:
            o = out[name]
            print(f"{name}: a 6 MB topic reserves {o['reserved_bytes']:,} B of shared memory")
            print(f"  after its publisher's SIGKILL /dev/shm holds {o['left_after_sigkill']}")
            if "left_after_cleanup" in o:
                print(f"  once another iceoryx2 node cleaned up dead nodes: {o['left_after_cleanup']}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
