"""A live synthetic session for fault scenarios, and the measurements every scenario takes.

    session = Session(workdir)                      # configs/tiny-cpu.yaml, checkpoints/tiny, private bus
    await session.start()                           # `perception up --json` + an observer on every topic
    result = await session.fault("encoder", signal.SIGKILL)
    await session.stop()

What runs: `perception up` (the launcher, its proxy and five nodes) as a child process, optionally
`perception record` beside it, and, in this process, an `Observer`: one subscriber to every topic that
notes each message's arrival, its (src, topic) `seq` (gaps and resets) and its publish time, the nodes'
heartbeats, and every segment and caption.

A fault's figures (`FaultResult`):
- `ready_s`: kill -> the first heartbeat of the target's new process saying `ready` (for the proxy: its
  first stats/bus; for the launcher: every node ready again);
- `output_s`: kill -> the first message on the target's output topic published after the kill (for the
  proxy: any embedding, which must have crossed the new proxy). events and decoder publish only when a
  segment closes, so theirs include the wait for the next segment;
- `lost` / `lost_in_flight`: messages missing by `seq` on `reliable` topics of the processes that did not
  die, per topic, placed by publish time once the run is over (`Session.attribute_losses`);
- `missed`: messages on the target's input topics published while it was down (not a loss of the bus:
  nobody was subscribed to take them);
- `restarted`: the other processes whose pid changed (none should, but the launcher takes all with it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
TRAINED = REPO / "checkpoints" / "tiny"
NODES = ("capture", "encoder", "events", "decoder", "world")
OUTPUT = {
    "capture": "frames/",
    "encoder": "embeddings/",
    "events": "events/",
    "decoder": "captions/",
    "world": "watches/",
    "proxy": "embeddings/",
    "launcher": "embeddings/",
}
INPUTS = {
    "capture": [],
    "encoder": ["frames/"],
    "events": ["embeddings/"],
    "decoder": ["decode/"],
    "world": ["events/", "captions/", "embeddings/"],
}
SPARSE = {"events", "decoder"}  # they publish only when a segment closes
# a message published this close before a kill (or after it, before the process is gone) may still have been
# inside the killed process: ZeroMQ pub/sub has no acknowledgements, so a dying proxy loses what it holds
IN_FLIGHT_NS = 50_000_000
IN_FLIGHT_AFTER_NS = 20_000_000  # the estimate's jitter: a stream's period varies by a few ms


def deep_update(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def session_config(workdir: Path, checkpoint: Path, overrides: dict | None = None) -> dict:
    """configs/tiny-cpu.yaml with a private runtime dir, the checkpoint and a persisted world memory."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["bus"]["runtime_dir"] = str(workdir / "rt")
    cfg["model"]["checkpoint"] = str(checkpoint)
    cfg["pipeline"]["world"]["persist"] = str(workdir / "world.jsonl")
    cfg["pipeline"]["world"]["store"] = str(workdir / "memory.db")  # private, not the user's default store
    return deep_update(cfg, overrides or {})


def child_env(log_level: str = "INFO") -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PERCEPTION_LOG_LEVEL"] = log_level
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass(slots=True)
class Seen:
    mono: float  # when it arrived here (time.monotonic)
    src: str
    seq: int
    t_pub: int  # publish time in its header (wall ns)


class Observer:
    """Every message on the bus, noted: it never decides anything, the scenarios read it."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.by_topic: dict[str, list[Seen]] = collections.defaultdict(list)
        self.last_seq: dict[tuple[str, str], int] = {}
        # (mono, src, topic, missing, publish time of the message before the gap and of the one after it)
        self.gaps: list[tuple[float, str, str, int, int, int]] = []
        self._last_t: dict[tuple[str, str], int] = {}
        self.resets: list[tuple[float, str, str]] = []
        self.beats: dict[str, list[tuple[float, int | None, bool, int]]] = collections.defaultdict(list)
        self.stats: dict[str, dict[str, float]] = {}
        self.segments: dict[tuple[str, int], set[tuple[int, int]]] = collections.defaultdict(set)
        self.segment_seen: list[tuple[int, str, int]] = []  # (t_pub, cam, segment_id)
        self.captions: list[tuple[int, str, int, int, int]] = []  # (t_pub, cam, segment_id, start_ns, end_ns)
        self.latency_ms: list[tuple[float, float]] = []  # (mono, embedding received - its frame's capture)
        self._task: asyncio.Task | None = None
        self._sub: Any = None

    async def start(self, timeout: float = 60.0) -> None:
        from bus.pubsub import BusNotReady, Subscriber

        deadline = time.monotonic() + timeout
        while True:
            sub = Subscriber(self.bus, [""], name="fault-observer", policy="reliable")
            try:
                self._sub = await sub.start(timeout=2.0)
                break
            except BusNotReady:
                sub.close()
                if time.monotonic() > deadline:
                    raise
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from bus.message import Stats
        from perception.messages import Caption, Embedding, Event

        async for env in self._sub:
            now = time.monotonic()
            topic = env.topic
            self.by_topic[topic].append(Seen(now, env.src, env.seq, env.t))
            key = (env.src, topic)
            last, last_t = self.last_seq.get(key), self._last_t.get(key, 0)
            self.last_seq[key] = env.seq
            self._last_t[key] = env.t
            if last is not None and env.seq != last + 1:
                if env.seq > last + 1:
                    self.gaps.append((now, env.src, topic, env.seq - last - 1, last_t, env.t))
                else:
                    self.resets.append((now, env.src, topic))
            msg = env.msg
            if isinstance(msg, Stats):
                pid = msg.counters.get("pid")
                ready = msg.node == "bus" or bool(msg.counters.get("ready"))  # the proxy's stats have no `ready`
                self.beats[msg.node].append((now, None if pid is None else int(pid), ready, env.t))
                self.stats[msg.node] = msg.counters
            elif isinstance(msg, Embedding):
                self.latency_ms.append((now, (time.time_ns() - msg.t_capture_ns) / 1e6))
            elif isinstance(msg, Event) and msg.kind == "segment":
                self.segments[(msg.cam, msg.segment_id)].add((msg.start_ns, msg.end_ns))
                self.segment_seen.append((env.t, msg.cam, msg.segment_id))
            elif isinstance(msg, Caption):
                self.captions.append((env.t, msg.cam, msg.segment_id, msg.start_ns, msg.end_ns))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            self._sub.close()

    # -- reading --------------------------------------------------------------------------------------------

    def first(self, prefix: str, *, after_ns: int, src: str | None = None) -> Seen | None:
        """The first message on a topic starting with `prefix` published after `after_ns` (wall)."""
        best = None
        for topic, seen in self.by_topic.items():
            if not topic.startswith(prefix):
                continue
            for s in seen:  # appended in arrival order; publish times of one src are ordered too
                if s.t_pub > after_ns and (src is None or s.src == src):
                    if best is None or s.mono < best.mono:
                        best = s
                    break
        return best

    def ready_beat(self, node: str, *, after_ns: int, not_pid: int | None) -> float | None:
        """Arrival time of the first `ready` heartbeat of `node` published after `after_ns` by another pid."""
        for mono, pid, ready, t_pub in self.beats.get(node, ()):
            if t_pub > after_ns and ready and (pid is None or pid != not_pid):
                return mono
        return None

    def count_published(self, prefix: str, since_ns: int, until_ns: int, exclude_src: str | None = None) -> int:
        return sum(
            1
            for topic, seen in self.by_topic.items()
            if topic.startswith(prefix)
            for s in seen
            if since_ns <= s.t_pub <= until_ns and s.src != exclude_src
        )

    def period_ns(self, src: str, topic: str, before_ns: int) -> int | None:
        """Median interval between a stream's publish times, from its messages up to `before_ns`."""
        ts = [s.t_pub for s in self.by_topic.get(topic, ()) if s.src == src and s.t_pub <= before_ns][-20:]
        if len(ts) < 3:
            return None
        gaps = sorted(b - a for a, b in zip(ts, ts[1:]))
        return gaps[len(gaps) // 2]


@dataclass
class FaultResult:
    target: str
    signal: str
    ready_s: float | None = None
    output_s: float | None = None
    gone_s: float | None = None  # kill -> the old process gone (for SIGSTOP: killed by the launcher)
    lost: dict[str, int] = field(default_factory=dict)  # published while the target was down, or after
    lost_in_flight: dict[str, int] = field(default_factory=dict)  # published within IN_FLIGHT_NS of the kill
    # the fault's window (wall ns: from the kill to the end of the settling time) and the sources that are
    # the target itself (their streams restart; nothing of theirs counts as lost): see Session.attribute_losses
    wall0: int = 0
    wall_end: int = 0
    own: set[str] = field(default_factory=set)
    missed: dict[str, int] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("own", "wall0", "wall_end")}


class Session:
    """`perception up` (+ optionally `perception record`) on configs/tiny-cpu.yaml, and an observer."""

    def __init__(
        self,
        workdir: Path,
        *,
        checkpoint: Path = TRAINED,
        overrides: dict | None = None,
        recorder: bool = False,
        recorder_args: list[str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        """`recorder_args`: extra `perception record` arguments (e.g. `--split-duration 60`)."""
        from perception.config import AppConfig

        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cfg = session_config(workdir, checkpoint, overrides)
        self.config_path = workdir / "session.yaml"
        self.config_path.write_text(yaml.safe_dump(self.cfg))
        self.config = AppConfig.model_validate(self.cfg)
        self.with_recorder = recorder
        self.recorder_args = list(recorder_args or [])
        self.log_level = log_level
        self.observer = Observer(self.config.bus)
        self.launcher: subprocess.Popen | None = None
        self.launches = 0
        self.recorder: subprocess.Popen | None = None
        self.recordings: list[Path] = []
        self.down: list[tuple[str, int, int]] = []  # (node, wall ns from, to): when it was not subscribed
        self.launcher_log = workdir / "launcher.log"
        self.launcher_rc: list[int | None] = []

    # -- processes ------------------------------------------------------------------------------------------

    def _launch(self) -> None:
        self.launches += 1
        with open(self.launcher_log, "ab") as err, open(self.workdir / "launcher.out", "ab") as out:
            self.launcher = subprocess.Popen(
                [sys.executable, "-m", "perception.cli", "up", str(self.config_path), "--json"],
                cwd=REPO,
                env=child_env(self.log_level),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def record(self, out: Path, args: list[str]) -> subprocess.Popen:
        """A `perception record OUT ARGS` child on the session's topics (its stdout in OUT's stem + .out)."""
        with open(self.workdir / "recorder.log", "ab") as err, open(self.workdir / f"{out.stem}.out", "wb") as so:
            return subprocess.Popen(
                [sys.executable, "-m", "perception.cli", "record", str(out), "--config", str(self.config_path)]
                + ["--topics", "events/", "captions/", "decode/", "embeddings/", "stats/", *args],
                cwd=REPO,
                env=child_env("WARNING"),
                stdin=subprocess.DEVNULL,
                stdout=so,
                stderr=err,
            )

    def _start_recorder(self) -> None:
        out = self.workdir / f"rec-{len(self.recordings)}.mcap"
        self.recordings.append(out)
        self.recorder = self.record(out, self.recorder_args)

    def recorder_ready(self) -> bool:
        out = self.workdir / f"{self.recordings[-1].stem}.out"
        return out.exists() and out.read_text().startswith("recording")

    def pids(self) -> dict[str, int]:
        """The live pipeline's processes by name (launcher, proxy, nodes, recorder)."""
        out: dict[str, int] = {}
        if self.launcher is not None and self.launcher.poll() is None:
            out["launcher"] = self.launcher.pid
            try:
                for child in psutil.Process(self.launcher.pid).children():
                    cmd = child.cmdline()
                    if child.name().startswith("spare:"):  # a waiting spare (supervisor.spares): not running yet
                        continue
                    if "perception.nodes" in cmd and child.status() != psutil.STATUS_ZOMBIE:
                        out[cmd[cmd.index("perception.nodes") + 1]] = child.pid
            except psutil.Error:
                pass
        if self.recorder is not None and self.recorder.poll() is None:
            out["recorder"] = self.recorder.pid
        return out

    async def start(self, timeout: float = 240.0) -> None:
        self._launch()
        await self.observer.start(timeout=timeout)
        await self.wait_up(timeout=timeout, after_ns=0)
        if self.with_recorder:
            self._start_recorder()
            await self.until(self.recorder_ready, timeout=60, what="the recorder to start")

    async def wait_up(self, timeout: float, after_ns: int) -> float:
        """Until every node and the proxy beat `ready` (after `after_ns`) and an embedding arrives."""
        names = [*NODES, "bus"]

        def up() -> bool:
            if self.launcher is None or self.launcher.poll() is not None:
                raise RuntimeError(f"perception up exited: {self.launcher_log.read_text()[-3000:]}")
            return all(self.observer.ready_beat(n, after_ns=after_ns, not_pid=None) for n in names) and (
                self.observer.first("embeddings/", after_ns=after_ns) is not None
            )

        return await self.until(up, timeout=timeout, what="the pipeline to come up")

    async def until(self, predicate, *, timeout: float, what: str, interval: float = 0.02) -> float:
        """Poll `predicate()` until true; returns time.monotonic() then. TimeoutError naming `what`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}")
            await asyncio.sleep(interval)
        return time.monotonic()

    async def stop(self) -> int | None:
        """SIGINT the launcher (its clean stop), stop the recorder and the observer."""
        rc = None
        if self.recorder is not None and self.recorder.poll() is None:
            self.recorder.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.recorder.wait, 30)
        if self.launcher is not None and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGINT)
            try:
                rc = await asyncio.to_thread(self.launcher.wait, 90)
            except subprocess.TimeoutExpired:
                self.launcher.kill()
        await self.observer.stop()
        return rc

    def cleanup(self) -> None:
        for proc in (self.recorder, self.launcher):
            if proc is not None and proc.poll() is None:
                proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- faults ---------------------------------------------------------------------------------------------

    async def fault(
        self,
        target: str,
        sig: int = signal.SIGKILL,
        *,
        settle_s: float = 3.0,
        deadline_s: float = 90.0,
        jitter_s: float = 0.0,
    ):
        """Send `sig` to `target` (a node, "proxy", "recorder" or "launcher") and measure its recovery. A random
        wait of up to `jitter_s` first keeps faults from locking onto the 1 s heartbeat cadence."""
        if jitter_s:
            await asyncio.sleep(random.uniform(0.0, jitter_s))
        pids0 = self.pids()
        pid = pids0[target]
        res = FaultResult(target, signal.Signals(sig).name)
        mono0, wall0 = time.monotonic(), time.time_ns()
        os.kill(pid, sig)
        try:
            if target == "launcher":
                await self._relaunch(res, pids0, mono0, wall0, deadline_s)
            elif target == "recorder":
                await self._restart_recorder(res, mono0, wall0, deadline_s)
            else:
                await self._recovered(res, target, pid, mono0, wall0, deadline_s)
        except TimeoutError as exc:
            res.notes["timeout"] = str(exc)
        await asyncio.sleep(settle_s)
        res.wall0, res.wall_end = wall0, time.time_ns()
        res.own = {"launcher": {*NODES, "bus"}, "proxy": {"bus"}, "recorder": set()}.get(target, {target})
        pids1 = self.pids()
        res.restarted = sorted(n for n, p in pids0.items() if n != target and pids1.get(n) != p)
        return res

    async def _recovered(self, res: FaultResult, target: str, pid: int, mono0: float, wall0: int, deadline_s: float):
        beat_name = "bus" if target == "proxy" else target
        await self.until(lambda: not _alive(pid), timeout=deadline_s, what=f"{target} (pid {pid}) to be gone")
        res.gone_s = time.monotonic() - mono0
        ready = await self.until(
            lambda: self.observer.ready_beat(beat_name, after_ns=wall0, not_pid=pid) is not None,
            timeout=deadline_s,
            what=f"{target} to be ready again",
        )
        ready = self.observer.ready_beat(beat_name, after_ns=wall0, not_pid=pid) or ready
        res.ready_s = ready - mono0
        wall_ready = time.time_ns()
        if target != "proxy":
            self.down.append((target, wall0, wall_ready))
            res.missed = {
                p: self.observer.count_published(p, wall0, wall_ready, exclude_src=target) for p in INPUTS[target]
            }
        src = None if target == "proxy" else target
        out_deadline = deadline_s if target not in SPARSE else 60.0
        try:
            await self.until(
                lambda: self.observer.first(OUTPUT[target], after_ns=wall0, src=src) is not None,
                timeout=out_deadline,
                what=f"a message on {OUTPUT[target]} from {target}",
            )
            res.output_s = self.observer.first(OUTPUT[target], after_ns=wall0, src=src).mono - mono0
        except TimeoutError as exc:
            res.notes["output"] = str(exc)

    async def _relaunch(self, res: FaultResult, pids0: dict[str, int], mono0: float, wall0: int, deadline_s: float):
        """The launcher died: its children must follow it (PR_SET_PDEATHSIG); then start `perception up`
        again, as a service manager (systemd Restart=always) would."""
        self.launcher_rc.append(await asyncio.to_thread(self.launcher.wait, 30))
        children = {n: p for n, p in pids0.items() if n not in ("launcher", "recorder")}
        try:
            await self.until(lambda: not any(_alive(p) for p in children.values()), timeout=20, what="no orphans")
        except TimeoutError:  # a child that outlived its launcher: noted, then killed so the run can go on
            res.notes["orphans"] = sorted(n for n, p in children.items() if _alive(p))
            for n in res.notes["orphans"]:
                os.kill(children[n], signal.SIGKILL)
            await self.until(lambda: not any(_alive(p) for p in children.values()), timeout=10, what="orphans gone")
        res.gone_s = time.monotonic() - mono0
        self.down.append(("all", wall0, 0))
        self._launch()
        ready = await self.wait_up(timeout=deadline_s, after_ns=wall0)
        self.down[-1] = ("all", wall0, time.time_ns())
        res.ready_s = ready - mono0
        first = self.observer.first("embeddings/", after_ns=wall0, src="encoder")
        res.output_s = None if first is None else first.mono - mono0

    async def _restart_recorder(self, res: FaultResult, mono0: float, wall0: int, deadline_s: float):
        """The recorder is a bus client like any other: restarted (by whoever runs it) into a new file; the
        killed file keeps what was flushed before the kill (`perception record --recover`)."""
        from bus.mcapfile import recover, scan

        await asyncio.to_thread(self.recorder.wait, 30)
        res.gone_s = time.monotonic() - mono0
        killed = self.recordings[-1]
        self._start_recorder()
        ready = await self.until(self.recorder_ready, timeout=deadline_s, what="the new recorder")
        res.ready_s = ready - mono0
        fixed = killed.with_suffix(".fixed.mcap")
        rec = await asyncio.to_thread(recover, killed, fixed)
        newest = max((m.publish_time for _, m in scan(fixed)), default=0)
        res.notes["recovered_messages"] = rec.messages
        res.notes["unflushed_ms"] = round((wall0 - newest) / 1e6, 1) if newest else None

    # -- losses ---------------------------------------------------------------------------------------------

    def attribute_losses(self, faults: list[FaultResult]) -> list[list]:
        """Give every message missing by seq on a reliable topic to the fault during which it was published, and
        return those that fall in none ([topic, src, estimated publish ns]).

        A gap shows only when the stream's next message arrives (seconds later on a sparse topic), so losses
        are placed by publish time, estimated from the stream's own period (prev + k * period; a stream that
        stops with its input, embeddings when frames stop, would look lost during the outage otherwise). Within
        IN_FLIGHT_NS of the kill a message may have been inside the killed process: `lost_in_flight`; later,
        while the target was down or after: `lost`. The target's own streams restart and count for nothing."""
        latest = tuple(self.config.bus.latest_prefixes)
        outside: list[list] = []
        for _, src, topic, missing, prev, nxt in self.observer.gaps:
            if topic.startswith(latest):
                continue
            period = self.observer.period_ns(src, topic, before_ns=prev)
            for k in range(1, missing + 1):
                est = min(prev + k * period, nxt) if period else (prev + nxt) // 2
                owner = next((f for f in faults if f.wall0 - IN_FLIGHT_NS <= est <= f.wall_end), None)
                if owner is None:
                    outside.append([topic, src, est])
                    continue
                if src in owner.own:
                    continue
                into = owner.lost_in_flight if est <= owner.wall0 + IN_FLIGHT_AFTER_NS else owner.lost
                into[topic] = into.get(topic, 0) + 1
                owner.notes.setdefault("lost_at_s", []).append([topic, src, round((est - owner.wall0) / 1e9, 3)])
        return outside

    # -- consistency ----------------------------------------------------------------------------------------

    async def world_check(self) -> dict[str, Any]:
        """World memory and segment ids after the faults: every caption on the segment of its id and span,
        ids unique per span, and every segment published while the world listened is in its memory."""
        from bus.rpc import RpcClient

        async with RpcClient(self.config.bus, timeout=20, retries=2) as rpc:
            hist = await rpc.call("history", {"kinds": ["segment", "caption"], "limit": 10000})
        items = hist["items"]
        segs: dict[tuple[str, int], set[tuple[int, int]]] = collections.defaultdict(set)
        for r in items:
            if r["kind"] == "segment":
                segs[(r["camera"], r["segment_id"])].add((r["start_ns"], r["end_ns"]))
        caps = [(r["camera"], r["segment_id"], r["start_ns"], r["end_ns"]) for r in items if r["kind"] == "caption"]
        obs_caps = [(c[1], c[2], c[3], c[4]) for c in self.observer.captions]

        def wrong(captions, segments) -> list:  # on a segment of that id but another span: the wrong segment
            return [c for c in captions if (c[0], c[1]) in segments and (c[2], c[3]) not in segments[(c[0], c[1])]]

        def orphans(captions, segments) -> list:  # its segment never arrived (published while down, or lost)
            return [c for c in captions if (c[0], c[1]) not in segments]

        union = collections.defaultdict(set)
        for k, spans in [*self.observer.segments.items(), *segs.items()]:
            union[k] |= spans
        reused = [k for k, spans in union.items() if len(spans) > 1]

        def world_listened(t: int) -> bool:
            return not any(
                who in ("world", "all") and a - 10**9 <= t <= (b or time.time_ns()) + 10**9 for who, a, b in self.down
            )

        stored = set(segs)
        missing = [
            (cam, sid) for t, cam, sid in self.observer.segment_seen if (cam, sid) not in stored and world_listened(t)
        ]
        uncaptioned = sorted(set(self.observer.segments) - {(c[1], c[2]) for c in self.observer.captions})
        ids = [sid for _, _, sid in sorted(self.observer.segment_seen)]
        return {
            "segments_stored": len(segs),
            "captions_stored": sum(r["kind"] == "caption" for r in items),
            "captions_on_wrong_segment": len(wrong(caps, segs)) + len(wrong(obs_caps, self.observer.segments)),
            "captions_without_their_segment_in_world": len(orphans(caps, segs)),
            "captions_without_their_segment_seen": len(orphans(obs_caps, self.observer.segments)),
            "segment_ids_reused": len(reused),
            "segment_ids_increasing": all(b > a for a, b in zip(ids, ids[1:])),
            "segments_missing_from_world": len(missing),
            "segments_published": len(self.observer.segments),
            "segments_without_caption": len(uncaptioned),
        }


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
