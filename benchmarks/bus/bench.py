"""`perception bench bus [--json OUT] [--quick]`: one-way latency and throughput by payload size, for
every transport side by side in one run, each as a ratio to raw pyzmq through the same proxy.

Transports (each run is its own sender + receiver process pair, see benchmarks/bus/worker.py):
  pyzmq-raw     PUB -> proxy -> SUB, multipart [topic, 9-byte header, payload]: our ceiling (same sockets)
  bus           Publisher -> proxy -> Subscriber: envelope, msgpack header, pydantic validation
  bus-shm       the same with bus.shm enabled: the header through the proxy, the payload by reference in
                shared memory (sender fills a loaned slot); inline below bus.shm.min_bytes
  bus-shm-copy  bus-shm publishing an ordinary array: one copy into the slot
  shm-ring      bus/shm.py's ring alone (loaned slot, reference over a direct PUB -> SUB): beside iceoryx2
  iceoryx2      iceoryx2's Python bindings: loaned sample + event notification (when installed)
  pyzmq-direct  PUB -> SUB with no proxy (one hop): what the proxy hop costs
  pyzmq-zmq_proxy  PUB -> libzmq's own zmq_proxy -> SUB: the unchecked C forwarder the bus used before
                its proxy checked sizes, roles and upstream traffic: what those checks cost
  zenoh         eclipse-zenoh peers over tcp loopback
  cyclonedds    Cyclone DDS on loopback (ROS 2's default middleware)
  dora          a dora-rs dataflow of two Python nodes under `dora run` (daemon-routed, shared memory > 4 KB)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bus.config import BusConfig
from bus.logs import get_logger

log = get_logger("benchmarks.bus.bench")

SIZES = [64, 4096, 65536, 1 << 20, 1920 * 1080 * 3]  # 6 220 800 B: a 1080p RGB frame
BASELINE = "pyzmq-raw"
CYCLONE_URI = (
    "<CycloneDDS><Domain id='any'><General><Interfaces><NetworkInterface name='lo'/></Interfaces>"
    "<AllowMulticast>false</AllowMulticast></General><Discovery><Peers><Peer address='127.0.0.1'/></Peers>"
    "<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>100</MaxAutoParticipantIndex>"
    "</Discovery></Domain></CycloneDDS>"
)


ZMQ_PROXY = """
import sys, zmq
ctx = zmq.Context()
xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
xsub.setsockopt(zmq.RCVHWM, int(sys.argv[2])); xpub.setsockopt(zmq.SNDHWM, int(sys.argv[2]))
xsub.bind(f"ipc://{sys.argv[1]}/pub"); xpub.bind(f"ipc://{sys.argv[1]}/sub")
zmq.proxy(xsub, xpub)
"""


def available_transports() -> list[str]:
    out = ["pyzmq-raw", "bus", "bus-shm", "bus-shm-copy", "shm-ring", "pyzmq-direct", "pyzmq-zmq_proxy"]
    if importlib.util.find_spec("iceoryx2"):
        out.append("iceoryx2")
    if importlib.util.find_spec("zenoh"):
        out.append("zenoh")
    if importlib.util.find_spec("cyclonedds"):
        out.append("cyclonedds")
    if importlib.util.find_spec("dora") and _dora_cli():
        out.append("dora")
    return out


def _dora_cli() -> str | None:
    """The `dora` binary of the dora-rs-cli wheel, next to this interpreter (or on PATH)."""
    return shutil.which("dora", path=str(Path(sys.executable).parent)) or shutil.which("dora")


def _run_dora(common: list[str], rdir: Path, env: dict[str, str]) -> dict:
    """Sender and receiver as nodes of a dora dataflow; they talk to us through files in `rdir`."""
    node_env = {"PYTHONPATH": env["PYTHONPATH"], "PERCEPTION_LOG_LEVEL": "WARNING"}
    args = " ".join(common[2:])
    flow = {
        "nodes": [
            {
                "id": "sender",
                "path": sys.executable,
                "args": f"-m benchmarks.bus.worker send {args}",
                "outputs": ["data"],
                "env": node_env,
            },
            {
                "id": "receiver",
                "path": sys.executable,
                "args": f"-m benchmarks.bus.worker recv {args}",
                "inputs": {"data": "sender/data"},
                "env": node_env,
            },
        ]
    }
    (rdir / "flow.yml").write_text(json.dumps(flow))  # JSON is YAML
    proc = subprocess.Popen(
        [_dora_cli(), "run", str(rdir / "flow.yml")],
        cwd=rdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for name, timeout in (("warm", 60), ("result", 120)):
            deadline = time.monotonic() + timeout
            while not (rdir / name).exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dora gave no {name!r}: {(proc.stderr.read() if proc.poll() is not None else '')[-500:]}"
                    )
                time.sleep(0.01)
            if name == "warm":
                (rdir / "go").touch()
        return json.loads((rdir / "result").read_text())
    finally:
        try:
            proc.wait(timeout=15)  # the sender exits a few seconds after the end markers
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm(size: int) -> int:
    """Same queue depth for every ZeroMQ-based transport: ~64 MB in flight per queue, 4..1000 messages."""
    return max(4, min(1000, (64 << 20) // size))


def _popen(args: list[str], env: dict[str, str], stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
    )


def _stop(*procs: subprocess.Popen | None) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            p.terminate()
    for p in procs:
        if p is None:
            continue
        try:
            p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def run_pair(transport: str, size: int, mode: str, quick: bool, extra: list[str] = ()) -> dict:
    """One sender/receiver pair (plus a proxy for the proxied transports); the receiver's figures."""
    rdir = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    env = dict(os.environ, PERCEPTION_LOG_LEVEL="WARNING", CYCLONEDDS_URI=CYCLONE_URI)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    hwm = _hwm(size)
    interval = max(0.002, size / 200e6)  # latency samples spaced so queues are empty between them
    count = (50 if quick else 300) if size < (1 << 20) else (20 if quick else 100)
    common = [
        "-m",
        "benchmarks.bus.worker",
        "--transport",
        transport,
        "--size",
        str(size),
        "--mode",
        mode,
        "--hwm",
        str(hwm),
        "--runtime-dir",
        str(rdir),
        "--port",
        str(_free_port()),
        "--domain",
        str(random.randint(1, 200)),
        "--count",
        str(count),
        "--interval",
        f"{interval:.6f}",
        "--seconds",
        "0.5" if quick else "1.5",
        *extra,
    ]
    if transport == "dora":
        try:
            return _run_dora(common, rdir, env)
        finally:
            shutil.rmtree(rdir, ignore_errors=True)
    proxy = sender = receiver = None
    try:
        if transport in ("pyzmq-raw", "bus", "bus-shm", "bus-shm-copy"):
            cfg = BusConfig.local(rdir, reliable_hwm=hwm, latest_hwm=hwm, proxy_hwm=hwm).model_dump_json()
            proxy = _popen(["-m", "benchmarks.bus.demo", "proxy", "--bus-json", cfg], env)
        elif transport == "pyzmq-zmq_proxy":
            proxy = _popen(["-c", ZMQ_PROXY, str(rdir), str(hwm)], env)
        receiver = _popen([common[0], common[1], "recv", *common[2:]], env)
        sender = _popen([common[0], common[1], "send", *common[2:]], env, stdin=True)
        deadline = time.monotonic() + 60
        line = receiver.stdout.readline()  # "warm": the route works end to end
        if line.strip() != "warm":
            raise RuntimeError(f"{transport} receiver did not warm up: {line!r} {receiver.stderr.read()[-500:]}")
        sender.stdin.write("go\n")
        sender.stdin.flush()
        result_line = receiver.stdout.readline()
        if not result_line or time.monotonic() > deadline:
            raise RuntimeError(f"{transport} receiver gave no result: {receiver.stderr.read()[-500:]}")
        result = json.loads(result_line)
        if (rdir / "sender.json").exists():  # `--stages`: the sender's own CPU per message
            result["sender"] = json.loads((rdir / "sender.json").read_text())
        return result
    finally:
        _stop(sender, receiver, proxy)
        shutil.rmtree(rdir, ignore_errors=True)


def machine_info() -> dict:
    import zmq

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "loadavg_start": os.getloadavg()[0],
    }
    for dist in ("eclipse-zenoh", "cyclonedds", "dora-rs", "dora-rs-cli", "iceoryx2"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:
            pass
    return info


def bench(transports: list[str], sizes: list[int], quick: bool) -> list[dict]:
    results = []
    for size in sizes:  # sizes outermost: every transport at one size runs close together in time
        for transport in transports:
            row: dict = {"transport": transport, "size": size}
            for mode in ("lat", "thr"):
                try:
                    r = run_pair(transport, size, mode, quick)
                except Exception as exc:  # one failing transport must not sink the whole comparison
                    log.error("benchmark pair failed", transport=transport, size=size, mode=mode, error=str(exc))
                    row["error"] = str(exc)[:300]
                    continue
                if mode == "lat":
                    row.update(p50_us=r["p50_us"], p99_us=r["p99_us"], lat_samples=r["received"])
                else:
                    row.update(msgs_per_s=r["msgs_per_s"], thr_received=r["received"])
                    row["mb_per_s"] = r["msgs_per_s"] * size / 1e6 if r["msgs_per_s"] else None
            log.info("bench", **{k: v for k, v in row.items() if k != "error"})
            results.append(row)
    base = {r["size"]: r for r in results if r["transport"] == BASELINE}
    for r in results:
        b = base.get(r["size"], {})
        if r.get("p50_us") and b.get("p50_us"):
            r["p50_ratio"] = r["p50_us"] / b["p50_us"]
            r["p99_ratio"] = r["p99_us"] / b["p99_us"]
        if r.get("msgs_per_s") and b.get("msgs_per_s"):
            r["thr_ratio"] = r["msgs_per_s"] / b["msgs_per_s"]
    return results


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[dict]) -> str:
    lines = [
        "| size | transport | p50 us | p99 us | msgs/s | MB/s | p50 / raw | p99 / raw | msgs/s / raw |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']} | {r['transport']} | {_fmt(r.get('p50_us'), '.0f')} | {_fmt(r.get('p99_us'), '.0f')} | "
            f"{_fmt(r.get('msgs_per_s'), ',.0f')} | {_fmt(r.get('mb_per_s'), ',.1f')} | "
            f"{_fmt(r.get('p50_ratio'), '.2f')} | {_fmt(r.get('p99_ratio'), '.2f')} | {_fmt(r.get('thr_ratio'), '.2f')} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    transports = list(dict.fromkeys(r["transport"] for r in results))
    colours = plt.get_cmap("tab20").colors  # one colour per transport (the default cycle repeats after 10)
    for k, t in enumerate(transports):
        style = dict(marker="os^Dv"[k % 5], color=colours[(2 * k) % 20 if k < 10 else (2 * k + 1) % 20], label=t)
        rows = [r for r in results if r["transport"] == t and r.get("p50_us")]
        ax1.plot([r["size"] for r in rows], [r["p50_us"] for r in rows], **style)
        rows = [r for r in results if r["transport"] == t and r.get("mb_per_s")]
        ax2.plot([r["size"] for r in rows], [r["mb_per_s"] for r in rows], **style)
    for ax, title in ((ax1, "one-way latency p50 (us)"), (ax2, "throughput (MB/s)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("payload (bytes)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax2.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def run(args: argparse.Namespace) -> int:
    transports = available_transports()
    if getattr(args, "transports", None):
        unknown = sorted(set(args.transports) - set(transports))
        if unknown:
            print(f"unknown or unavailable transport(s) {unknown}; available: {transports}", file=sys.stderr)
            return 2
        transports = [t for t in transports if t in args.transports]
    sizes = getattr(args, "sizes", None) or SIZES
    started = time.time()
    load_start = os.getloadavg()[0]
    results = bench(transports, sizes, quick=args.quick)
    print(table(results))
    machine = machine_info()
    machine["loadavg_start"] = load_start  # machine_info() runs after the benchmark
    machine["loadavg_end"] = os.getloadavg()[0]
    machine["seconds"] = round(time.time() - started, 1)
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"results": results, "machine": machine, "quick": args.quick}, indent=1))
        png = Path(getattr(args, "png", None) or out.with_suffix(".png"))
        plot(results, png)
        print(f"wrote {out} and {png}")
    return 0
