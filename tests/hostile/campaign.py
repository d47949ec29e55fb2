"""Hostile-input campaign against a live system: `python -m tests.hostile.campaign --duration 600 [--json OUT]`.

What runs (every process real, on ipc:// in a private 0700 runtime dir under /tmp):
    proxy      python -m perception.nodes proxy
    world      python -m perception.nodes world      (RPC on bus.rpc: now / history / search / ask / watch...)
    encoder    python -m perception.nodes encoder    (RPC `ask` / `embed` / `info` on its own endpoint)
    recorder   perception record (MCAP, topics fuzz/ and events/), read back at the end
    campaign   this process: a live Subscriber on fuzz/, the publisher of everything, the RPC clients
    generator  a worker process drawing examples from tests/hostile/strategies.py (hypothesis)

Until the duration runs out it sends, in rounds: numbered valid messages (fuzz/valid, some from a fresh
random `src` each), numbered valid Events to the world (events/valid-events), valid Frames to the encoder,
and hostile messages of every class of strategies.CLASSES to three targets (fuzz/bad/ -> the subscriber
and the recorder, events|captions|embeddings/hostile -> the world and the recorder, frames/hostile -> the
encoder), with the seed corpus cycled in; and, concurrently, valid RPC calls (bus.rpc.RpcClient) and
hostile ones (raw DEALER frames) to the world and to the encoder. Each round waits until the subscriber
has every valid message of the round, so nothing is lost to a queue limit on the way.

Every hostile message is also judged in process (the proxy's rule and `bus.codec.decode` with the same
limits), so the live counters can be checked exactly: the subscriber must have rejected precisely what the
codec rejects, the proxy dropped precisely what its rule drops, the world's subscriber likewise.

Checks (exit 1 if any fails): every valid message delivered to the subscriber, in order, and recorded;
every valid Event stored by the world; every valid RPC call answered with ok; every hostile RPC request
that must be answered answered; no process died; the subscriber's per-stream state within
bus.max_streams; each process's peak RSS within its bound (baseline after warm-up + --rss-margin-mb).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
VALID_TOPIC = "fuzz/valid"
VALID_CAM = "valid-events"  # in pipeline.cameras: the world never evicts it
FRAME_CAM = "cam0"
TARGET_PREFIXES = {
    "subscriber": ["fuzz/bad/"],
    "world": ["events/hostile", "captions/hostile", "embeddings/hostile"],
    "encoder": ["frames/hostile"],
}
PER_ROUND = {"subscriber": 8, "world": 4, "encoder": 2}  # hostile messages per round and target
RPC_TARGETS = {
    "world": ["now", "history", "search", "ask", "watch", "unwatch", "watches"],
    "encoder": ["ask", "embed", "info"],
}
MAX_VALID_EVENTS = 9000  # below the world's max_items (10 000 here): every one must still be there at the end
RPC_REPLY_TIMEOUT_S = 30.0
HEARTBEAT_GAP_S = 10.0  # nodes publish stats every 0.5 s here; a node silent this long is frozen


# -- generation: in a worker process (hypothesis is CPU-bound and would hold this loop's GIL) -------------


def _collect(strategy: Any, n: int, seed: int) -> list:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list = []

    @hseed(seed)
    @settings(
        max_examples=n, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def collect(x: Any) -> None:
        out.append(x)

    collect()
    return out


def generate_messages(seed: int, n: int, prefix: str, max_len: int) -> list:
    from tests.hostile.strategies import hostile_messages

    return _collect(hostile_messages(prefix, max_len=max_len), n, seed)


def generate_rpc(seed: int, n: int, methods: list[str], max_len: int) -> list:
    from tests.hostile.strategies import rpc_requests

    return _collect(rpc_requests(methods, max_len=max_len), n, seed)


def _worker_init() -> None:
    os.nice(5)  # the system under test comes first


# -- the in-process judge -----------------------------------------------------------------------------------


def proxy_verdict(parts: list[bytes], bus: Any) -> str | None:
    """What bus/proxy.py's forwarder does with this multipart: the drop reason, or None (forwarded)."""
    n, total = 1, len(parts[0])
    for p in parts[1:]:
        total += len(p)
        if n >= bus.max_parts:
            return "parts"
        if total > bus.max_msg_size:
            return "size"
        n += 1
    if len(parts[0]) > bus.max_topic_bytes:
        return "topic"
    return None


def codec_verdict(parts: list[bytes], limits: Any, types: frozenset[str] | None = None) -> str:
    """`decode`'s verdict, as a receiver that knows only the message `types` would give it (the nodes do
    not import skills/, so SkillEvent is an unknown type to them)."""
    from bus import message
    from bus.codec import DecodeError, decode

    saved = None
    if types is not None and set(message._REGISTRY) - types:
        saved = dict(message._REGISTRY)
        for name in set(saved) - types:
            del message._REGISTRY[name]
    try:
        decode(parts, limits=limits)
    except DecodeError as exc:
        return exc.reason
    finally:
        if saved is not None:
            message._REGISTRY.clear()
            message._REGISTRY.update(saved)
    return "accepted"


def node_message_types() -> frozenset[str]:
    """The message types a world or encoder process has registered (asked of a fresh interpreter)."""
    code = (
        "import json, perception.nodes.world, perception.nodes.encoder, perception.nodes.runtime; "
        "from bus.message import registered_types; print(json.dumps(sorted(registered_types())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return frozenset(json.loads(out.strip().splitlines()[-1]))


@dataclass
class Tally:
    tried: int = 0
    proxy_dropped: int = 0
    rejected: int = 0  # by the receiver's codec
    accepted: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)

    def add(self, verdict: str, proxy: str | None) -> None:
        self.tried += 1
        if proxy is not None:
            self.proxy_dropped += 1
            self.reasons[f"proxy:{proxy}"] += 1
        elif verdict == "accepted":
            self.accepted += 1
        else:
            self.rejected += 1
            self.reasons[verdict] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "tried": self.tried,
            "proxy_dropped": self.proxy_dropped,
            "rejected": self.rejected,
            "accepted": self.accepted,
            "reasons": dict(self.reasons),
        }


@dataclass
class RpcTally:
    tried: int = 0
    ok: int = 0
    error: int = 0
    no_reply: int = 0  # where none is due (a spent budget)
    unanswered: int = 0  # where one was due: a failure
    max_reply_s: float = 0.0
    codes: collections.Counter = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tried": self.tried,
            "ok": self.ok,
            "error": self.error,
            "no_reply": self.no_reply,
            "unanswered": self.unanswered,
            "max_reply_s": round(self.max_reply_s, 3),
            "codes": dict(self.codes),
        }


# -- processes ----------------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path
    stdout: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _env() -> dict[str, str]:
    from perception.nodes.runtime import PARENT_ENV

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PERCEPTION_LOG_LEVEL"] = "ERROR"  # hostile input makes warnings by the thousand
    env[PARENT_ENV] = str(os.getpid())  # children die with this process, even if it is SIGKILLed
    return env


def spawn(name: str, argv: list[str], rt: Path, *, stdout: bool = False) -> Child:
    log = rt / f"{name}.log"
    out = rt / f"{name}.out" if stdout else None
    with open(log, "wb") as err, open(out or os.devnull, "wb") as so:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=so,
            stderr=err,
            start_new_session=True,
        )
    return Child(name, proc, log, out)


def stop_child(child: Child, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
    """Signal the child's process group, then SIGKILL it after `timeout`; returns the exit code."""
    if child.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)
        try:
            child.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, signal.SIGKILL)  # anything it left in its group
    return child.proc.returncode


def recorder_child_main(argv: list[str]) -> int:
    """`--recorder-child CONFIG OUT`: `perception record` that dies with the campaign."""
    from perception.cli import main
    from perception.nodes.runtime import die_with_parent

    die_with_parent()
    cfg, out = argv
    return main(["record", out, "--config", cfg, "--topics", "fuzz/", "events/", "--flush-interval", "0.5"])


# -- the campaign -------------------------------------------------------------------------------------------


@dataclass
class Options:
    duration: float = 600.0
    seed: int | None = None
    checkpoint: str = "checkpoints/tiny"
    short: bool = False
    rss_margin_mb: float = 200.0
    max_msg_size: int = 8 * MiB
    max_len: int = 64 * 1024  # largest generated value (the seed corpus adds 5 MiB and 16 MiB ones)
    srcs_per_round: int = 20
    json_out: Path | None = None
    keep: bool = False


class Campaign:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.seed = opts.seed if opts.seed is not None else random.randrange(2**31)
        self.rng = random.Random(self.seed)
        self.children: dict[str, Child] = {}
        self.failures: list[str] = []
        self.stop = asyncio.Event()
        self._side_tasks: set[asyncio.Future] = set()  # fire-and-forget publishers, kept referenced
        self.tally: dict[str, Tally] = collections.defaultdict(Tally)  # by class
        self.seed_tally: dict[str, Tally] = collections.defaultdict(Tally)  # by seed corpus name
        self.expect: dict[str, collections.Counter] = {t: collections.Counter() for t in TARGET_PREFIXES}
        self.proxy_expected = 0
        self.rpc_tally: dict[tuple[str, str], RpcTally] = collections.defaultdict(RpcTally)
        self.rpc_seed_tally: dict[tuple[str, str], RpcTally] = collections.defaultdict(RpcTally)
        self.rpc_valid: dict[str, collections.Counter] = {t: collections.Counter() for t in RPC_TARGETS}
        self.pools: dict[str, collections.deque] = {}
        self.fresh: dict[str, collections.deque] = {}
        self.generated: collections.Counter = collections.Counter()
        self.valid_sent = 0
        self.valid_got: list[int] = []
        self.valid_out_of_order = 0
        self.extras_delivered = 0
        self.events_sent: list[int] = []
        self.frames_sent = 0
        self.rounds = 0
        self.rss: dict[str, dict[str, float]] = {}
        self.node_stats: dict[str, dict[str, float]] = {}
        self.max_streams_seen = 0
        self.oversize_frames = 0
        self.unanswered_cases: list[dict[str, Any]] = []
        self.rss_timeline: list[dict[str, float]] = []
        self.heartbeat_seen: dict[str, float] = {}  # node -> when its last Stats arrived
        self.heartbeat_gap: dict[str, float] = {}  # node -> longest silence while fuzzing
        self.inflight_valid: dict[str, tuple[float, str]] = {}  # target -> (start, call) of the call now running
        self.stop_time: float | None = None
        self.t_fuzz = time.monotonic()
        self._delivered = asyncio.Event()

    # -- setup ------------------------------------------------------------------------------------------

    def _app_config(self, rt: Path) -> Any:
        from perception.config import AppConfig

        ckpt = Path(self.opts.checkpoint)
        if not ckpt.is_absolute():
            ckpt = REPO / ckpt
        return AppConfig.model_validate(
            {
                "name": "hostile",
                "bus": {
                    "runtime_dir": str(rt),
                    "max_msg_size": self.opts.max_msg_size,
                    "stats_interval_s": 0.5,
                    "ready_timeout_s": 10.0,
                    "max_streams": 1024,
                },
                "model": {"checkpoint": str(ckpt), "device": "cpu", "dtype": "float32"},
                "pipeline": {
                    "cameras": [
                        {"name": FRAME_CAM, "type": "synthetic", "size": 64},
                        {"name": VALID_CAM, "type": "synthetic", "size": 64},
                    ],
                    "encoder": {"frame_step": 1, "stride_frames": 4, "threads": 1, "jit": not self.opts.short},
                    "world": {"max_items": 10_000, "ask_timeout_s": 20.0},
                    "nodes": ["world", "encoder"],
                },
            }
        )

    async def _start(self) -> None:
        import yaml

        from bus.pubsub import BusNotReady, Publisher, Subscriber

        rt = self.rt
        self.app = app = self._app_config(rt)
        self.bus = app.bus
        self.limits = app.bus.limits()
        (rt / "config.json").write_text(app.model_dump_json())
        (rt / "config.yaml").write_text(yaml.safe_dump(app.model_dump(mode="json")))
        self.embed_dim = json.loads((Path(app.model.checkpoint) / "config.json").read_text())["model"]["embed_dim"]
        cfg = str(rt / "config.json")
        self.children["proxy"] = spawn("proxy", ["-m", "perception.nodes", "proxy", "--config-json", cfg], rt)
        deadline = time.monotonic() + 60
        while True:  # the proxy is up once a subscriber completes the handshake
            self.stats_sub = Subscriber(self.bus, ["stats/"], name="campaign-stats")
            try:
                await self.stats_sub.start(timeout=2.0)
                break
            except BusNotReady:
                self.stats_sub.close()
                self._check_alive()
                if self.failures or time.monotonic() > deadline:
                    raise RuntimeError(f"proxy did not come up: {self.children['proxy'].tail()}") from None
        self.stats_task = asyncio.create_task(self._read_stats())
        for name in ("world", "encoder"):
            self.children[name] = spawn(name, ["-m", "perception.nodes", name, "--config-json", cfg], rt)
        self.node_types = await asyncio.to_thread(node_message_types)
        self.mcap = rt / "session.mcap"
        self.children["recorder"] = spawn(
            "recorder",
            ["-m", "tests.hostile.campaign", "--recorder-child", str(rt / "config.yaml"), str(self.mcap)],
            rt,
            stdout=True,
        )
        self.sub = Subscriber(self.bus, ["fuzz/"], name="campaign")
        await self.sub.start()
        # one publisher for everything, frames/ included, on its `reliable` socket (HWM 100 000): nothing we
        # send is dropped on our side (a `latest` socket drops beyond 4 queued), and one pipe keeps the order
        self.pub = Publisher(self.bus.model_copy(update={"latest_prefixes": []}), src="valid")
        await self.pub.ready()
        self.reader_task = asyncio.create_task(self._read_fuzz())
        deadline = time.monotonic() + 240
        rec = self.children["recorder"]
        while not (
            self._node_ready("world")
            and self._node_ready("encoder")
            and "recording" in rec.stdout.read_text(errors="replace")
        ):
            self._check_alive()
            if self.failures:
                raise RuntimeError("; ".join(self.failures))
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not ready within 240 s: stats seen {sorted(self.node_stats)}")
            await asyncio.sleep(0.2)

    def _node_ready(self, name: str) -> bool:
        return bool(self.node_stats.get(name, {}).get("ready"))

    async def _read_stats(self) -> None:
        from bus.message import Stats

        async for env in self.stats_sub:
            if isinstance(env.msg, Stats):
                node, now = env.msg.node, time.monotonic()
                self.node_stats[node] = env.msg.counters
                if node in self.heartbeat_seen and self.stop_time is None:
                    self.heartbeat_gap[node] = max(self.heartbeat_gap.get(node, 0.0), now - self.heartbeat_seen[node])
                self.heartbeat_seen[node] = now

    async def _read_fuzz(self) -> None:
        async for env in self.sub:
            if env.topic == VALID_TOPIC:
                k = int(env.msg.label)
                if k != len(self.valid_got):
                    self.valid_out_of_order += 1
                self.valid_got.append(k)
                if len(self.valid_got) >= self.valid_sent:
                    self._delivered.set()
            else:
                self.extras_delivered += 1
            self.max_streams_seen = max(self.max_streams_seen, len(self.sub._last_seq))

    def _check_alive(self) -> None:
        for child in self.children.values():
            if not child.alive() and not any(f.startswith(f"{child.name} died") for f in self.failures):
                self.failures.append(f"{child.name} died (exit {child.proc.returncode}): {child.tail(1500)}")
                if child.name == "proxy":  # nothing else can go on; after any other, fuzz the rest to the end
                    self.stop.set()

    # -- traffic ----------------------------------------------------------------------------------------

    def _valid_blob(self, src: str | None) -> None:
        import numpy as np

        from benchmarks.bus.messages import Blob
        from bus.codec import encode

        k = self.valid_sent
        msg = Blob(label=str(k), t_mono_ns=time.monotonic_ns(), data=np.full(k % 7, k % 256, np.uint8))
        if src is None:
            self.pub.publish_nowait(VALID_TOPIC, msg)
        else:  # a new stream (src, topic) each time: seq 0
            self.pub.publish_raw(encode(VALID_TOPIC, msg, seq=0, src=src, t_ns=time.time_ns()))
        self.valid_sent += 1

    def _valid_event(self) -> None:
        import numpy as np

        from perception.messages import Event, LabelScore

        k = len(self.events_sent)
        v = np.random.default_rng(k).standard_normal(self.embed_dim).astype(np.float32)
        now = time.time_ns()
        self.pub.publish_nowait(
            f"events/{VALID_CAM}",
            Event(
                cam=VALID_CAM,
                kind="segment",
                segment_id=k,
                start_ns=now - 1_000_000,
                end_ns=now,
                labels=[LabelScore(label="a red circle", score=0.5)],
                t_capture_ns=now,
                embedding=v / np.linalg.norm(v),
            ),
        )
        self.events_sent.append(k)

    def _send_hostile(self, target: str, cls: str, parts: list[bytes], seed_name: str | None = None) -> None:
        if not parts or any(len(p) > self.bus.max_msg_size for p in parts):
            return  # unsendable (no parts), or a frame ZMQ_MAXMSGSIZE answers by disconnecting us
        proxy = proxy_verdict(parts, self.bus)
        types = None if target == "subscriber" else self.node_types
        verdict = "dropped" if proxy else codec_verdict(parts, self.limits, types)
        self.tally[cls].add(verdict, proxy)
        if seed_name:
            self.seed_tally[seed_name].add(verdict, proxy)
        if proxy:
            self.proxy_expected += 1
        else:
            self.expect[target]["accepted" if verdict == "accepted" else "rejected"] += 1
        self.pub.publish_raw(parts)

    def _draw(self, key: str) -> Any | None:
        fresh, pool = self.fresh.get(key), self.pools.get(key)
        if fresh:
            item = fresh.popleft()
            pool.append(item)
            return item
        if pool:
            return pool[self.rng.randrange(len(pool))]
        return None

    async def _generator(self) -> None:
        """Keep fresh examples coming for every pub/sub target and RPC target, one batch at a time."""
        loop = asyncio.get_running_loop()
        jobs = [("rpc", t, None) for t in RPC_TARGETS] + [
            ("pub", t, p) for t, ps in TARGET_PREFIXES.items() for p in ps
        ]
        for _, t, p in jobs:
            key = f"pub:{p}" if p else f"rpc:{t}"
            self.pools[key] = collections.deque(maxlen=2000)
            self.fresh[key] = collections.deque(maxlen=2000)
        i = 0
        while not self.stop.is_set():
            kind, target, prefix = jobs[i % len(jobs)]
            seed = self.seed * 100_000 + i
            i += 1
            if kind == "pub":
                batch = await loop.run_in_executor(
                    self.executor, generate_messages, seed, 40, prefix, self.opts.max_len
                )
                key = f"pub:{prefix}"
            else:
                batch = await loop.run_in_executor(
                    self.executor, generate_rpc, seed, 20, RPC_TARGETS[target], self.opts.max_len
                )
                key = f"rpc:{target}"
            self.fresh[key].extend(batch)
            self.generated[key] += len(batch)

    async def _pubsub(self) -> None:
        from tests.hostile.strategies import seed_corpus

        by_target = {
            t: seed_corpus(self.bus, prefix=TARGET_PREFIXES[t][0].rstrip("/") + "/", short=self.opts.short)
            for t in TARGET_PREFIXES
        }
        corpus = [(t, by_target[t][i]) for i in range(len(by_target["subscriber"])) for t in TARGET_PREFIXES]
        # the whole corpus in the first ~7 s (so that the run outlasts what a seed case does by far), then
        # one case a second (short runs: ten)
        next_seed, seed_every, first_cycle = time.monotonic(), 0.1, len(corpus)
        next_event = time.monotonic()
        while not self.stop.is_set():
            self.rounds += 1
            self._valid_blob(None)
            for _ in range(self.opts.srcs_per_round):
                self._valid_blob(f"valid-{self.rng.getrandbits(48):012x}")
            if time.monotonic() >= next_event and len(self.events_sent) < MAX_VALID_EVENTS:
                self._valid_event()
                next_event += 0.1
            for target, n in PER_ROUND.items():
                for _ in range(n):
                    prefix = self.rng.choice(TARGET_PREFIXES[target])
                    h = self._draw(f"pub:{prefix}")
                    if h is not None:
                        self._send_hostile(target, h.cls, h.parts)
            if time.monotonic() >= next_seed:
                next_seed += seed_every
                target, seed = corpus.pop(0)
                corpus.append((target, seed))
                first_cycle -= 1
                if first_cycle == 0 and not self.opts.short:
                    seed_every = 1.0
                for parts in seed.messages():
                    self._send_hostile(target, seed.cls, parts, seed_name=seed.name)
                self._oversize_frame_now_and_then()
            self._valid_blob(None)  # the round's last message: once it is in, the whole round is
            await self._wait_delivered()
            await asyncio.sleep(0.005)

    def _oversize_frame_now_and_then(self) -> None:
        """Sometimes a frame over ZMQ_MAXMSGSIZE, from a publisher of its own (the proxy disconnects it)."""
        if self.rng.random() < 0.2:
            task = asyncio.ensure_future(self._oversize_frame())
            self._side_tasks.add(task)  # a task nobody references can be garbage-collected mid-flight
            task.add_done_callback(self._side_tasks.discard)

    async def _oversize_frame(self) -> None:
        from bus.pubsub import Publisher

        pub = Publisher(self.bus, src="oversize")
        try:
            await pub.ready(timeout=5)
            pub.publish_raw([b"fuzz/bad/oversize", b"\x00" * (self.bus.max_msg_size + 1)])
            self.oversize_frames += 1
            await asyncio.sleep(0.2)
        except Exception as exc:
            self.failures.append(f"oversize-frame publisher: {type(exc).__name__}: {exc}")
        finally:
            pub.close(linger_ms=0)

    async def _wait_delivered(self, timeout: float = 60.0) -> None:
        if len(self.valid_got) >= self.valid_sent:
            return
        self._delivered.clear()
        try:
            await asyncio.wait_for(self._delivered.wait(), timeout)
        except TimeoutError:
            self.failures.append(
                f"valid messages stalled: {len(self.valid_got)} of {self.valid_sent} delivered after {timeout} s"
            )
            self.stop.set()

    async def _frames(self) -> None:
        """Valid frames for the encoder (its `ask` answers from the newest window)."""
        import numpy as np

        from perception.messages import Frame

        rng = np.random.default_rng(self.seed)
        fps = 8.0
        while not self.stop.is_set():
            now = time.time_ns()
            self.pub.publish_nowait(
                f"frames/{FRAME_CAM}",
                Frame(
                    cam=FRAME_CAM,
                    index=self.frames_sent,
                    t_capture_ns=now,
                    stream_s=self.frames_sent / fps,
                    image=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                ),
            )
            self.frames_sent += 1
            await asyncio.sleep(1 / fps)

    # -- RPC --------------------------------------------------------------------------------------------

    def _endpoint(self, target: str) -> str:
        from perception.nodes.workers import encoder_endpoint

        return self.bus.endpoint("rpc") if target == "world" else encoder_endpoint(self.app)

    def _valid_calls(self, target: str) -> list[tuple[str, dict]]:
        ask = {"question": "what colour is the shape?", "choices": ["red", "green", "blue"], "camera": FRAME_CAM}
        if target == "world":
            return [
                ("now", {}),
                ("now", {"camera": VALID_CAM}),
                ("history", {"camera": VALID_CAM, "limit": 5}),
                ("search", {"text": "a red circle", "k": 3}),
                ("ask", ask),
                ("watch", {"phrase": "a red circle", "camera": VALID_CAM}),  # the same watch every time
                ("watches", {"camera": VALID_CAM}),
                ("unwatch", {"id": "w-00000000"}),  # unknown: removed false, not an error
            ]
        return [
            ("ask", ask),
            ("ask", {"question": "what happens?", "camera": FRAME_CAM}),
            ("embed", {"texts": ["a red circle", "a blue square"]}),
            ("info", {}),
        ]

    async def _rpc_valid(self, target: str, until_stopped: bool = True) -> None:
        from bus.rpc import RpcClient, RpcError, RpcTimeout

        calls = self._valid_calls(target)
        tally = self.rpc_valid[target]
        async with RpcClient(
            self.bus, endpoint=self._endpoint(target), timeout=RPC_REPLY_TIMEOUT_S, retries=0
        ) as client:
            i = 0
            while not (until_stopped and self.stop.is_set()):
                method, params = calls[i % len(calls)]
                i += 1
                t0 = time.monotonic()
                self.inflight_valid[target] = (t0, f"{method}({json.dumps(params)[:80]})")
                try:  # counted once answered or failed; one cut short by the end of the run: see _finish
                    await client.call(method, params)
                    tally["sent"] += 1
                    tally["ok"] += 1
                except (RpcError, RpcTimeout) as exc:
                    tally["sent"] += 1
                    tally["failed"] += 1
                    if tally["failed"] <= 5:
                        self.failures.append(
                            f"valid RPC {target}.{method}({json.dumps(params)[:120]}) failed: "
                            f"{type(exc).__name__}: {exc}"[:400]
                        )
                self.inflight_valid.pop(target, None)
                tally["max_ms"] = max(tally["max_ms"], int((time.monotonic() - t0) * 1000))
                if not until_stopped and i >= len(calls):
                    return
                await asyncio.sleep(0.2)

    async def _rpc_hostile(self, target: str) -> None:
        import zmq
        import zmq.asyncio

        from tests.hostile.strategies import rpc_seed_corpus

        seeds = [s for s in rpc_seed_corpus() if target in s.targets]
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._endpoint(target))
        next_seed = time.monotonic()
        try:
            while not self.stop.is_set():
                seed = None
                if seeds and time.monotonic() >= next_seed:
                    next_seed += 2.0 if self.opts.short else 5.0
                    seed = seeds.pop(0)
                    seeds.append(seed)
                    case = seed.build()
                else:
                    case = self._draw(f"rpc:{target}")
                    if case is None:
                        await asyncio.sleep(0.1)
                        continue
                tallies = [self.rpc_tally[(target, case.cls)]]
                if seed is not None:
                    tallies.append(self.rpc_seed_tally[(target, seed.name)])
                await self._one_rpc(sock, case, tallies, target)
        finally:
            sock.close(linger=0)

    async def _one_rpc(self, sock: Any, case: Any, tallies: list[RpcTally], target: str) -> None:
        import msgpack

        t0 = time.monotonic()
        await sock.send_multipart(case.frames)
        wait = {True: RPC_REPLY_TIMEOUT_S, None: 3.0, False: 1.0}[case.expect_reply]
        reply = None
        try:
            async with asyncio.timeout(wait):
                while True:
                    frames = await sock.recv_multipart()
                    if frames and frames[0] == case.frames[0]:
                        reply = frames
                        break  # anything else is a late reply to an earlier request
        except TimeoutError:
            pass
        dt = time.monotonic() - t0
        for t in tallies:
            t.tried += 1
            if reply is None:
                if case.expect_reply is True:
                    t.unanswered += 1
                else:
                    t.no_reply += 1
                continue
            t.max_reply_s = max(t.max_reply_s, dt)
            try:
                body = msgpack.unpackb(reply[1], raw=False) if len(reply) == 2 else None
            except Exception:
                body = None
            if isinstance(body, dict) and body.get("ok") is True:
                t.ok += 1
            else:
                t.error += 1
                code = body.get("error", {}).get("code") if isinstance(body, dict) else "unreadable_reply"
                t.codes[str(code)] += 1
        if reply is None and case.expect_reply is True:
            sizes = [len(f) for f in case.frames]
            if len(self.unanswered_cases) < 20:
                self.unanswered_cases.append(
                    {
                        "target": target,
                        "cls": case.cls,
                        "t_s": round(t0 - self.t_fuzz, 2),
                        "frames_hex": [f[:65536].hex() for f in case.frames],
                    }
                )
            self.failures.append(
                f"{target} RPC gave no reply within {wait:.0f} s to a {case.cls} request "
                f"(frame sizes {sizes[:6]}, body {case.frames[1][:120] if len(case.frames) > 1 else case.frames[0][:120]!r})"[
                    :500
                ]
            )

    # -- measurement ------------------------------------------------------------------------------------

    def _pids(self) -> dict[str, int]:
        pids = {name: c.proc.pid for name, c in self.children.items()}
        pids["campaign (subscriber)"] = os.getpid()
        for p in getattr(self.executor, "_processes", {}) or {}:
            pids["generator"] = p
        return pids

    def _sample(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, pid in self._pids().items():
            try:
                out[name] = psutil.Process(pid).memory_info().rss / MiB
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    async def _sampler(self) -> None:
        next_point = 0.0
        while not self.stop.is_set():
            sample = self._sample()
            for name, mb in sample.items():
                r = self.rss.setdefault(name, {"baseline_mb": mb, "peak_mb": mb})
                r["peak_mb"] = max(r["peak_mb"], mb)
                r["last_mb"] = mb
            if time.monotonic() >= next_point:  # a coarse timeline, to tell growth from a one-off peak
                next_point = time.monotonic() + 10.0
                self.rss_timeline.append(
                    {"t_s": round(time.monotonic() - self.t_fuzz, 1), **{k: round(v, 1) for k, v in sample.items()}}
                )
            self._check_alive()
            if time.monotonic() >= self.deadline:
                self.stop.set()
            await asyncio.sleep(0.5)

    # -- run --------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        from bus.logs import configure_logging

        configure_logging(level="CRITICAL")  # our subscriber would log every hostile message it drops
        self.rt = Path(tempfile.mkdtemp(prefix="hx-", dir="/tmp"))
        os.chmod(self.rt, 0o700)
        self.executor = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )
        started = time.monotonic()
        tasks: list[asyncio.Task] = []
        try:
            await self._start()
            self.startup_s = round(time.monotonic() - started, 1)
            gen = asyncio.create_task(self._generator())
            tasks.append(gen)
            tasks.append(asyncio.create_task(self._frames()))
            self.deadline = time.monotonic() + 240
            tasks.append(asyncio.create_task(self._sampler()))
            await self._warm_up()
            for _ in range(600):  # every pool has its first batch before the fuzzing starts
                if self.stop.is_set() or all(self.fresh.get(k) for k in self.pools):
                    break
                await asyncio.sleep(0.1)
            for r in self.rss.values():  # the baseline: everything loaded, every call served once
                r["baseline_mb"] = r["peak_mb"] = r["last_mb"]
            self.rss_timeline.clear()
            self.deadline = time.monotonic() + self.opts.duration
            self.t_fuzz = time.monotonic()
            tasks += [asyncio.create_task(self._pubsub())]
            for target in RPC_TARGETS:
                tasks.append(asyncio.create_task(self._rpc_valid(target)))
                tasks.append(asyncio.create_task(self._rpc_hostile(target)))
            await self.stop.wait()
            self.stop_time = time.monotonic()
            self.fuzz_s = round(time.monotonic() - self.t_fuzz, 1)
            for target, (t0, call) in self.inflight_valid.items():  # a call the end cut short: lost if long
                if self.stop_time - t0 > 5.0:
                    self.rpc_valid[target]["sent"] += 1
                    self.rpc_valid[target]["failed"] += 1
                    self.failures.append(
                        f"valid RPC {target}.{call} still unanswered after "
                        f"{self.stop_time - t0:.0f} s when the run ended"
                    )
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    self.failures.append(f"campaign task failed: {type(exc).__name__}: {exc}")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._finish()
        except Exception as exc:
            import traceback

            self.failures.append(f"campaign error: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
        finally:
            for t in [*tasks, getattr(self, "stats_task", None), getattr(self, "reader_task", None)]:
                if t is not None:
                    t.cancel()
            for name in ("recorder", "encoder", "world", "proxy"):
                if name in self.children:
                    stop_child(self.children[name], signal.SIGINT if name == "recorder" else signal.SIGTERM)
            for attr in ("sub", "stats_sub"):
                if hasattr(self, attr):
                    getattr(self, attr).close()
            if hasattr(self, "pub"):
                self.pub.close(linger_ms=0)
            self.executor.shutdown(wait=False, cancel_futures=True)
            for p in list(getattr(self.executor, "_processes", {}) or {}):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            if not self.opts.keep:
                shutil.rmtree(self.rt, ignore_errors=True)
        return self.result()

    async def _warm_up(self) -> None:
        """Frames until the encoder has a window; one valid event; each valid call once; RSS settles."""
        from bus.rpc import RpcClient, RpcError, RpcTimeout

        self._valid_event()
        deadline = time.monotonic() + 120
        async with RpcClient(self.bus, endpoint=self._endpoint("encoder"), timeout=5, retries=0) as enc:
            while True:
                try:
                    await enc.call("ask", {"question": "what colour is the shape?", "camera": FRAME_CAM})
                    break
                except (RpcError, RpcTimeout) as exc:
                    self._check_alive()
                    if self.failures or time.monotonic() > deadline:
                        raise RuntimeError(f"the encoder never answered `ask`: {exc}") from exc
                    await asyncio.sleep(0.3)
        for target in RPC_TARGETS:
            await self._rpc_valid(target, until_stopped=False)
        self.rpc_valid = {t: collections.Counter() for t in RPC_TARGETS}  # warm-up calls do not count
        self.failures = [f for f in self.failures if not f.startswith("valid RPC")]
        await asyncio.sleep(2.0)

    async def _finish(self) -> None:
        """After the last round: everything delivered, counters settled, the recording read back."""
        from bus.rpc import RpcClient, RpcError, RpcTimeout

        await self._wait_delivered(30)
        # the world's subscriber: its counters arrive in its stats once per stats_interval_s
        for _ in range(60):  # the nodes' subscribers: their counters arrive in their stats, twice a second
            if all(
                self.node_stats.get(node, {}).get("sub.bad", -1) >= self.expect[node]["rejected"]
                for node in ("world", "encoder")
            ):
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.2)  # one more stats period, and the proxy's counters too
        self.final_stats = {k: dict(v) for k, v in self.node_stats.items()}
        now = time.monotonic()
        for node in ("world", "encoder", "bus"):
            silent = now - self.heartbeat_seen.get(node, 0.0)
            self.heartbeat_gap[node] = max(self.heartbeat_gap.get(node, 0.0), silent)
        self.sub_bad = dict(self.sub.stats.bad)
        self.world_history: dict[str, Any] = {}
        try:
            async with RpcClient(self.bus, timeout=30, retries=0) as client:
                hist = await client.call("history", {"camera": VALID_CAM, "kinds": ["segment"], "limit": 10_000})
                now = await client.call("now", {"camera": VALID_CAM})
            ids = [r["segment_id"] for r in hist["items"]]
            self.world_history = {
                "stored": len(set(ids) & set(self.events_sent)),
                "total": hist["total"],
                "last_segment": (now["cameras"][VALID_CAM]["last_segment"] or {}).get("segment_id"),
            }
        except (RpcError, RpcTimeout, KeyError, TypeError) as exc:
            self.failures.append(f"world history after the run failed: {type(exc).__name__}: {exc}")
        # the recorder: stop it cleanly (SIGINT writes the footer), then read every valid message back
        rec = self.children["recorder"]
        code = stop_child(rec, signal.SIGINT, timeout=60)
        self.recorder_summary: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            self.recorder_summary = json.loads(rec.stdout.read_text().strip().splitlines()[-1])
        self.recorded = {"valid": 0, "events": 0, "exit": code}
        if code != 0:
            self.failures.append(f"recorder exited {code}: {rec.tail(1500)}")
        try:
            self._read_recording()
        except Exception as exc:
            self.failures.append(f"reading the recording failed: {type(exc).__name__}: {exc}")

    def _read_recording(self) -> None:
        from bus.codec import decode
        from bus.mcapfile import iter_messages

        labels, events = [], []
        for m in iter_messages(self.mcap, topics=[VALID_TOPIC, f"events/{VALID_CAM}"]):
            env = decode(m.parts(), limits=self.limits)
            if env.topic == VALID_TOPIC:
                labels.append(int(env.msg.label))
            else:
                events.append(env.msg.segment_id)
        self.recorded.update(
            valid=len(set(labels)),
            valid_dupes=len(labels) - len(set(labels)),
            events=len(set(events) & set(self.events_sent)),
        )

    # -- result -----------------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        stats = getattr(self, "final_stats", self.node_stats)
        bus_counters = stats.get("bus", {})
        proxy_dropped = int(sum(v for k, v in bus_counters.items() if k.startswith("dropped_")))
        world, encoder = stats.get("world", {}), stats.get("encoder", {})
        sub_bad = getattr(self, "sub_bad", {})
        checks = []

        def check(name: str, ok: bool, detail: str) -> None:
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        got = len(self.valid_got)
        check(
            "valid delivered to the subscriber",
            got == self.valid_sent and self.valid_out_of_order == 0 and self.valid_got == list(range(self.valid_sent)),
            f"{got}/{self.valid_sent} in order ({self.valid_out_of_order} out of order)",
        )
        rec = getattr(self, "recorded", {})
        check(
            "valid recorded by the recorder",
            rec.get("valid") == self.valid_sent and not rec.get("valid_dupes"),
            f"{rec.get('valid')}/{self.valid_sent} (+ events {rec.get('events')}/{len(self.events_sent)})",
        )
        check(
            "valid events recorded",
            rec.get("events") == len(self.events_sent),
            f"{rec.get('events')}/{len(self.events_sent)}",
        )
        wh = getattr(self, "world_history", {})
        check(
            "valid events stored by the world",
            wh.get("stored") == len(self.events_sent)
            and wh.get("last_segment") == (self.events_sent[-1] if self.events_sent else None),
            f"{wh.get('stored')}/{len(self.events_sent)}, last {wh.get('last_segment')}",
        )
        for target, c in self.rpc_valid.items():
            check(
                f"valid RPC answered ok ({target})",
                c["sent"] > 0 and c["ok"] == c["sent"],
                f"{c['ok']}/{c['sent']} (slowest {c['max_ms']} ms)",
            )
        unanswered = sum(t.unanswered for t in self.rpc_tally.values())  # seed cases are counted in their class too
        check("hostile RPC requests answered where due", unanswered == 0, f"{unanswered} unanswered")
        exp = self.expect["subscriber"]
        bad_total = sum(sub_bad.values())
        check(
            "subscriber rejected exactly what the codec rejects",
            bad_total == exp["rejected"],
            f"live {bad_total} vs judged {exp['rejected']}",
        )
        check(
            "subscriber delivered exactly what the codec accepts",
            self.extras_delivered == exp["accepted"],
            f"live {self.extras_delivered} vs judged {exp['accepted']}",
        )
        check(
            "proxy dropped exactly what its rule drops",
            proxy_dropped == self.proxy_expected,
            f"live {proxy_dropped} vs judged {self.proxy_expected}",
        )
        wexp = self.expect["world"]["rejected"]
        check(
            "world's subscriber rejected what the codec rejects",
            world.get("sub.bad", -1) == wexp,
            f"live {world.get('sub.bad')} vs judged {wexp}",
        )
        eexp = self.expect["encoder"]["rejected"]
        check(
            "encoder's subscriber rejected what the codec rejects",
            encoder.get("sub.bad", -1) == eexp,
            f"live {encoder.get('sub.bad')} vs judged {eexp}",
        )
        max_streams = self.bus.max_streams if hasattr(self, "bus") else 0
        check(
            "subscriber per-stream state within bus.max_streams",
            0 < self.max_streams_seen <= max_streams,
            f"peak len(sub._last_seq) {self.max_streams_seen} <= {max_streams}",
        )
        rss_rows = {}
        for name, r in self.rss.items():
            bound = r["baseline_mb"] + self.opts.rss_margin_mb
            rss_rows[name] = {
                "baseline_mb": round(r["baseline_mb"], 1),
                "peak_mb": round(r["peak_mb"], 1),
                "bound_mb": round(bound, 1),
            }
            check(
                f"RSS of {name} within bound", r["peak_mb"] <= bound, f"peak {r['peak_mb']:.0f} MiB <= {bound:.0f} MiB"
            )
        for node in ("world", "encoder", "bus"):
            gap = self.heartbeat_gap.get(node)
            check(
                f"{node} kept publishing its stats (not frozen)",
                gap is not None and gap <= HEARTBEAT_GAP_S,
                f"longest silence {gap if gap is None else round(gap, 1)} s <= {HEARTBEAT_GAP_S} s",
            )
        died = [f for f in self.failures if " died " in f]
        check("no process died", not died, "; ".join(d[:200] for d in died) or "all alive to the end")
        failures = list(self.failures) + [f"check failed: {c['check']}: {c['detail']}" for c in checks if not c["ok"]]
        return {
            "ok": not failures,
            "seed": self.seed,
            "duration_s": self.opts.duration,
            "short": self.opts.short,
            "startup_s": getattr(self, "startup_s", None),
            "fuzz_s": getattr(self, "fuzz_s", None),
            "rounds": self.rounds,
            "limits": {"max_msg_size": self.opts.max_msg_size, "max_len": self.opts.max_len},
            "messages": {k: v.as_dict() for k, v in sorted(self.tally.items())},
            "seed_corpus": {k: v.as_dict() for k, v in sorted(self.seed_tally.items())},
            "generated": dict(self.generated),
            "valid": {
                "sent": self.valid_sent,
                "delivered": got,
                "recorded": rec.get("valid"),
                "events_sent": len(self.events_sent),
                "events_stored_by_world": wh.get("stored"),
                "events_recorded": rec.get("events"),
                "frames_sent": self.frames_sent,
            },
            "rpc": {f"{t}:{c}": v.as_dict() for (t, c), v in sorted(self.rpc_tally.items())},
            "rpc_seed_corpus": {f"{t}:{c}": v.as_dict() for (t, c), v in sorted(self.rpc_seed_tally.items())},
            "rpc_valid": {t: dict(c) for t, c in self.rpc_valid.items()},
            "live_counters": {
                "subscriber_bad": sub_bad,
                "proxy": {k: v for k, v in bus_counters.items() if k.startswith("dropped") or k == "upstream_dropped"},
                "world_sub_bad": world.get("sub.bad"),
                "encoder_sub_bad": encoder.get("sub.bad"),
                "oversize_frames_sent": self.oversize_frames,
            },
            "recorder": getattr(self, "recorder_summary", {}),
            "rss": rss_rows,
            "rss_margin_mb": self.opts.rss_margin_mb,
            "rss_timeline": self.rss_timeline,
            "checks": checks,
            "failures": failures,
            "unanswered_rpc_cases": self.unanswered_cases,
            "node_counters": {k: stats.get(k, {}) for k in ("world", "encoder", "bus")},
        }


# -- report -------------------------------------------------------------------------------------------------


def render(res: dict[str, Any]) -> str:
    out = []
    w = out.append
    w(
        f"hostile campaign: seed {res['seed']}, {res.get('fuzz_s')} s of fuzzing after {res.get('startup_s')} s "
        f"start-up, {res['rounds']} rounds, max_msg_size {res['limits']['max_msg_size'] // MiB} MiB"
    )
    w("")
    w(f"{'pub/sub class':<22}{'tried':>9}{'proxy drop':>12}{'rejected':>10}{'accepted':>10}   top reasons")
    tot = collections.Counter()
    for cls, t in res["messages"].items():
        top = ", ".join(f"{k} {v}" for k, v in sorted(t["reasons"].items(), key=lambda kv: -kv[1])[:3])
        w(f"{cls:<22}{t['tried']:>9}{t['proxy_dropped']:>12}{t['rejected']:>10}{t['accepted']:>10}   {top}")
        for k in ("tried", "proxy_dropped", "rejected", "accepted"):
            tot[k] += t[k]
    w(f"{'total':<22}{tot['tried']:>9}{tot['proxy_dropped']:>12}{tot['rejected']:>10}{tot['accepted']:>10}")
    w(
        "distinct examples generated (sent again from a pool of the last 2000 when none is fresh): "
        + ", ".join(f"{k} {v}" for k, v in res["generated"].items())
    )
    w("")
    w(f"{'seed corpus case':<36}{'sent':>6}{'proxy drop':>12}{'rejected':>10}{'accepted':>10}")
    for name, t in res["seed_corpus"].items():
        w(f"{name:<36}{t['tried']:>6}{t['proxy_dropped']:>12}{t['rejected']:>10}{t['accepted']:>10}")
    w("")
    w(f"{'RPC target:class':<36}{'tried':>7}{'ok':>6}{'error':>7}{'none due':>9}{'UNANSWERED':>11}{'slowest s':>10}")
    for key, t in list(res["rpc"].items()) + [(f"seed {k}", v) for k, v in res["rpc_seed_corpus"].items()]:
        w(
            f"{key[:36]:<36}{t['tried']:>7}{t['ok']:>6}{t['error']:>7}{t['no_reply']:>9}{t['unanswered']:>11}"
            f"{t['max_reply_s']:>10.2f}"
        )
    w("")
    v = res["valid"]
    w(
        f"valid messages: sent {v['sent']}, delivered {v['delivered']}, recorded {v['recorded']} "
        f"({100.0 * (v['delivered'] or 0) / max(1, v['sent']):.1f} % delivered)"
    )
    w(
        f"valid events:   sent {v['events_sent']}, stored by the world {v['events_stored_by_world']}, "
        f"recorded {v['events_recorded']}"
    )
    for t, c in res["rpc_valid"].items():
        w(
            f"valid RPC {t:<8} sent {c.get('sent', 0)}, answered ok {c.get('ok', 0)} "
            f"({100.0 * c.get('ok', 0) / max(1, c.get('sent', 0)):.1f} %), slowest {c.get('max_ms', 0)} ms"
        )
    w("")
    w(f"{'process':<24}{'baseline MiB':>13}{'peak MiB':>10}{'bound MiB':>11}")
    for name, r in res["rss"].items():
        w(f"{name:<24}{r['baseline_mb']:>13.0f}{r['peak_mb']:>10.0f}{r['bound_mb']:>11.0f}")
    w(f"(bound = baseline after warm-up + {res['rss_margin_mb']:.0f} MiB)")
    w("")
    for c in res["checks"]:
        w(f"[{'ok' if c['ok'] else 'FAIL':>4}] {c['check']}: {c['detail']}")
    for f in res["failures"]:
        if not f.startswith("check failed"):
            w(f"[FAIL] {f}")
    w("")
    w("PASS" if res["ok"] else "FAIL")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--recorder-child":
        return recorder_child_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m tests.hostile.campaign", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of fuzzing (after start-up)")
    p.add_argument("--json", type=Path, default=None, help="write the result here (its folder is created)")
    p.add_argument("--seed", type=int, default=None, help="reproduce a run (default: random, printed)")
    p.add_argument("--checkpoint", default="checkpoints/tiny")
    p.add_argument("--short", action="store_true", help="the `make test` size: 20k empty parts, no JIT trace")
    p.add_argument(
        "--rss-margin-mb",
        type=float,
        default=200.0,
        help="RSS bound of each process: its baseline after warm-up + this (default 200)",
    )
    p.add_argument("--keep", action="store_true", help="keep the runtime dir (logs, recording)")
    args = p.parse_args(argv)
    opts = Options(
        duration=args.duration,
        seed=args.seed,
        checkpoint=args.checkpoint,
        short=args.short,
        rss_margin_mb=args.rss_margin_mb,
        json_out=args.json,
        keep=args.keep,
    )
    res = asyncio.run(Campaign(opts).run())
    print(render(res), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1, default=str) + "\n")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
