"""Launch and supervise the pipeline: the proxy and every node as child processes, from one config.

    launcher = Launcher(prepare_config("configs/tiny-cpu.yaml", source="synthetic"), json_lines=False)
    exit_code = asyncio.run(launcher.run(duration=30))

- `prepare_config` (perception/nodes/preflight.py) validates the whole config (pydantic) and checks what can
  be checked without starting anything (video files exist, the checkpoint exists); every problem is
  reported with its dotted path.
- Children run `python -m perception.nodes NAME --config-json FILE`, each in its own session (process
  group), with PR_SET_PDEATHSIG so they die with the launcher even if it is SIGKILLed.
- Start order: the proxy, then every node but capture (in parallel, each must publish a `ready` heartbeat
  on stats/<node>), then capture, so no frame is captured before the encoder listens.
- A node that exits unexpectedly, or whose process cannot even be started (OSError...), is restarted at
  once if it had run `stable_after_s`, else after a backoff that doubles up to `backoff_max_s`; the others
  keep running. A crash loop is capped:
  after `max_restarts` restarts without a run of `stable_after_s` (which resets the count and the
  backoff) the node is given up with one error line (node, restarts, last return code), the rest keep
  running and `run` returns 1. During start-up a node given up fails the start at once.
- A wedged child (alive but its stats/<node> heartbeat silent for `heartbeat_timeout_s`, e.g. SIGSTOPped or
  its loop blocked) is killed with SIGKILL and so restarted like a crashed one. Heartbeats come through the
  proxy, so a node's silence counts only up to the proxy's own latest heartbeat (stats/bus).
- `node_stats` keeps the latest counters of the configured nodes and the proxy ("bus") only: anyone may
  publish on stats/<whatever>.
- SIGINT / SIGTERM / `duration`: SIGTERM to each child's process group, upstream first and one at a
  time (capture, encoder, events, decoder, world; events closes its open segments and the decoder
  captions them as they stop), SIGKILL after `stop_timeout_s`, the proxy last. Nothing is left behind.
- Spares (`supervisor.spares`, default the encoder): once such a node is ready, a second process of it
  is started with `--spare`: it imports and loads its model, then waits on its stdin touching no socket.
  When the node dies the supervisor tells the spare to go instead of cold-starting one (imports and model
  load are most of a restart: docs/reliability.md), then starts the next spare once it is ready.
- Captions and events are printed as they arrive (one line each, or JSON lines with `json_lines`) by a
  `Console` (perception/nodes/console.py).
- `record=PATH` (`perception up --record`): a recorder in this process subscribes to `record_topics`
  before any node starts, so the file holds the session from its first frame (what `perception test`
  needs to reproduce it exactly), and stops after every node, so what their teardown published is in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bus.logs import RateLimited, get_logger
from bus.mcapfile import RecordingError
from bus.message import Stats
from bus.pubsub import BusNotReady, Subscriber
from bus.record import Recorder
from bus.runtime import run_until_stopped
from bus.security import ensure_runtime_dir, refuse_live_ipc
from perception.config import AppConfig
from perception.messages import Caption, Event
from perception.nodes import NODE_NAMES
from perception.nodes.console import Console
from perception.nodes.runtime import PARENT_ENV
from perception.nodes.workers import encoder_endpoints, worker_names

log = get_logger("launcher")


def processes(config: AppConfig) -> list[str]:
    """The configured nodes' process names in start order, the encoder as its workers when there are several."""
    names = []
    for name in NODE_NAMES:
        if name in config.pipeline.nodes:
            names += worker_names(config.pipeline.encoder.workers) if name == "encoder" else [name]
    return names


class NodeGaveUp(RuntimeError):
    """A node needed for start-up was given up (its crash loop exceeded supervisor.max_restarts)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0  # all restarts
    loop_restarts: int = 0  # restarts in the current crash loop (reset by a run of stable_after_s)
    failed_starts: int = 0  # spawns that raised (no process at all)
    last_returncode: int | None = None
    last_error: str | None = None  # why the last spawn failed
    gave_up: bool = False
    backoff: float = 0.0
    supervisor: asyncio.Task | None = None
    pids: list[int] = field(default_factory=list)  # every pid this child ever had (tests check them)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set when given up
    last_beat: float | None = None  # monotonic time of the current process's latest heartbeat
    wedged: int = 0  # times it was killed for a silent heartbeat
    beaten: asyncio.Event = field(default_factory=asyncio.Event)  # the current process has beaten once


class Launcher:
    def __init__(
        self,
        config: AppConfig,
        *,
        json_lines: bool = False,
        out: TextIO | None = None,
        log_level: str | None = None,
        record: str | Path | None = None,
        record_topics: list[str] | None = None,
    ) -> None:
        self.config = config
        self.console = Console(out, json_lines=json_lines)
        self.log_level = log_level
        self.sup = config.pipeline.supervisor
        self.children: dict[str, Child] = {}
        self.stopping = False
        self.node_stats: dict[str, dict[str, float]] = {}  # only for `_stat_names`: a bounded set
        self._stat_names = set(processes(config)) | {"bus"}
        self._listen_errors = RateLimited(5.0)
        self._ready: dict[str, asyncio.Event] = {}
        self._stop = asyncio.Event()
        self._up = False  # every node reported ready once
        self._config_file: Path | None = None
        self._bus_beat: float | None = None  # when stats/bus was last heard
        self.record, self.record_topics = record, record_topics or [""]
        self.recorder: Recorder | None = None
        self._recording: asyncio.Task | None = None
        self.spares: dict[str, asyncio.subprocess.Process] = {}  # child name -> its waiting spare
        self._spare_tasks: dict[str, asyncio.Task] = {}

    # -- children -----------------------------------------------------------------------------------------

    def _write_config(self) -> Path:
        ensure_runtime_dir(self.config.bus)
        path = Path(self.config.bus.runtime_dir) / f"pipeline-{os.getpid()}.json"
        path.write_text(self.config.model_dump_json())
        return path

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[PARENT_ENV] = str(os.getpid())
        if self.log_level:
            env["PERCEPTION_LOG_LEVEL"] = self.log_level
        return env

    async def _spawn(self, child: Child) -> None:
        spare = await self._take_spare(child)
        child.proc = spare or await asyncio.create_subprocess_exec(
            *child.argv,
            env=self._env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),
            start_new_session=True,
        )
        child.started = time.monotonic()
        child.beaten.clear()
        child.pids.append(child.proc.pid)
        log.info("started", node=child.name, pid=child.proc.pid, restarts=child.restarts, spare=spare is not None)
        if child.name in self.sup.spares and not self.stopping:
            old = self._spare_tasks.pop(child.name, None)
            if old is not None:
                old.cancel()
            self._spare_tasks[child.name] = asyncio.create_task(self._make_spare(child), name=f"spare-{child.name}")

    # -- spares (supervisor.spares) -------------------------------------------------------------------------

    async def _take_spare(self, child: Child) -> asyncio.subprocess.Process | None:
        """The child's waiting spare, told to go; None when there is none alive (then a cold start)."""
        spare = self.spares.pop(child.name, None)
        if spare is None or spare.returncode is not None or spare.stdin is None:
            return None
        try:
            spare.stdin.write(b"go\n")
            await spare.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return None
        return spare

    async def _make_spare(self, child: Child) -> None:
        """Once the child's process is ready (so the spare's imports do not slow its start), start its
        spare: `--spare` preloads and waits. A spare that dies meanwhile is replaced by a cold start."""
        try:
            await child.beaten.wait()
            if self.stopping:
                return
            proc = await asyncio.create_subprocess_exec(
                *child.argv,
                "--spare",
                env=self._env(),
                stdin=asyncio.subprocess.PIPE,
                stdout=sys.stderr.fileno(),
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            log.warning("spare failed to start", node=child.name, error=f"{type(exc).__name__}: {exc}")
            return
        self.spares[child.name] = proc
        log.info("spare started", node=child.name, pid=proc.pid)

    async def _stop_spares(self) -> None:
        for task in self._spare_tasks.values():
            task.cancel()
        await asyncio.gather(*self._spare_tasks.values(), return_exceptions=True)
        for proc in self.spares.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # it holds nothing: no socket, no file
                await proc.wait()
        self.spares.clear()

    async def _run_once(self, child: Child) -> bool:
        """Start `child` and wait for it to exit; True if it ran `stable_after_s` (a crash loop ended)."""
        try:
            await self._spawn(child)
        except Exception as exc:  # OSError (no such file, EMFILE, ENOMEM), ValueError...: a failed start
            child.proc = None
            child.failed_starts += 1
            child.last_returncode = None
            child.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "node failed to start", node=child.name, error=child.last_error, failed_starts=child.failed_starts
            )
            return False
        child.last_error = None
        child.last_returncode = await child.proc.wait()
        return time.monotonic() - child.started >= self.sup.stable_after_s

    async def _supervise(self, child: Child) -> None:
        """Keep `child` running until the launcher stops; restart with exponential backoff, give it up
        after `max_restarts` restarts in one crash loop. Never ends silently."""
        child.backoff = self.sup.backoff_initial_s
        try:
            while not self.stopping:
                stable = await self._run_once(child)
                if self.stopping:
                    return
                if stable:  # a node that had been running: back at once (backing off is for crash loops)
                    child.backoff = self.sup.backoff_initial_s
                    child.loop_restarts = 0
                    delay = 0.0
                else:
                    delay = child.backoff
                    child.backoff = min(child.backoff * 2, self.sup.backoff_max_s)
                if child.loop_restarts >= self.sup.max_restarts:
                    self._give_up(child)
                    return
                child.restarts += 1
                child.loop_restarts += 1
                log.warning(
                    "node exited, restarting",
                    node=child.name,
                    returncode=child.last_returncode,
                    error=child.last_error,
                    restart_in_s=delay,
                    restarts=child.restarts,
                )
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                    return
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in here must not leave a node unsupervised without a word
            child.last_error = f"supervisor failed: {type(exc).__name__}: {exc}"
            self._give_up(child)

    def _give_up(self, child: Child) -> None:
        child.gave_up = True
        child.done.set()
        log.error(
            f"node {child.name} gave up: it failed {child.loop_restarts + 1} times in a row "
            f"(restarts={child.loop_restarts}, supervisor.max_restarts={self.sup.max_restarts}); "
            + ("the other nodes keep running" if self._up else "the pipeline cannot start without it"),
            node=child.name,
            restarts=child.loop_restarts,
            returncode=child.last_returncode,
            error=child.last_error,
        )

    def _argv(self, name: str) -> list[str]:
        return [sys.executable, "-m", "perception.nodes", name, "--config-json", str(self._config_file)]

    def _start(self, name: str) -> Child:
        child = self.children[name] = Child(name, self._argv(name))
        self._ready.setdefault(name, asyncio.Event())
        child.supervisor = asyncio.create_task(self._supervise(child), name=f"supervise-{name}")
        return child

    async def _stop_child(self, child: Child) -> None:
        proc = child.proc  # its supervisor returns by itself once `stopping` is set and the process ends
        if proc is None or proc.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, self.sup.stop_timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
                if sig == signal.SIGTERM:
                    os.killpg(proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) node handles SIGTERM only once resumed
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(proc.wait(), timeout=wait)
                return
            except TimeoutError:
                log.warning("node did not stop in time", node=child.name, signal=sig.name)

    def request_stop(self) -> None:
        """Ask `run` to shut everything down (what SIGINT / SIGTERM do)."""
        self._stop.set()

    async def stop(self) -> None:
        self.stopping = True
        self._stop.set()
        await self._stop_spares()
        # upstream first, one at a time: events closes its open segments and the decoder captions them
        # before it stops, while the proxy and this launcher's listener still run
        for name in reversed(processes(self.config)):
            if name in self.children:
                await self._stop_child(self.children[name])
        await self._stop_recording()
        if "proxy" in self.children:
            await self._stop_child(self.children["proxy"])
        for child in self.children.values():
            if child.supervisor is not None:
                child.supervisor.cancel()
        await asyncio.gather(*(c.supervisor for c in self.children.values() if c.supervisor), return_exceptions=True)
        if self._config_file is not None:
            self._config_file.unlink(missing_ok=True)

    # -- recording ----------------------------------------------------------------------------------------

    async def _start_recording(self) -> None:
        """Record from before the first node starts; a recorder that fails says why and nothing else stops."""
        from perception.sessions.metadata import session_metadata

        self.recorder = Recorder(
            self.config.bus, self.record, topics=self.record_topics, session=session_metadata(self.config)
        )
        self._recording = asyncio.create_task(self.recorder.run(), name="recorder")
        ready = asyncio.ensure_future(self.recorder.ready.wait())
        await asyncio.wait(
            {ready, self._recording}, timeout=self.sup.startup_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self._recording.done():
            self._recording.result()  # RecordingError: the pipeline does not start without its recording
        log.info("recording", path=str(self.record), topics=self.record_topics)

    async def _stop_recording(self) -> None:
        """After the nodes exit: let what they published last reach the recorder (quiet for 0.3 s, at
        most 3 s), then close the file."""
        if self._recording is None or self.recorder is None:
            return
        deadline, seen = time.monotonic() + 3.0, -1
        while not self._recording.done() and time.monotonic() < deadline and seen != self.recorder.stats.received:
            seen = self.recorder.stats.received
            await asyncio.sleep(0.3)
        self._recording.cancel()
        results = await asyncio.gather(self._recording, return_exceptions=True)
        if isinstance(results[0], Exception):
            log.error("recording failed", path=str(self.record), error=str(results[0]))
        s = self.recorder.stats
        log.info("recording closed", path=str(self.record), messages=s.messages, dropped=s.dropped)

    def frames_captured(self) -> int:
        """Frames the capture node has read so far, sent or not, from its latest stats/capture."""
        counters = self.node_stats.get("capture", {})
        return int(sum(v for k, v in counters.items() if k.endswith((".frames", ".frames_unsent"))))

    async def _saw_frames(self) -> bool:
        """At the end of a `duration` run: did any camera deliver a frame? Waits for one more heartbeat
        before saying no (stats lag by up to one interval); a run that saw none failed, say so."""
        for _ in range(int(2 * self.config.bus.stats_interval_s / 0.05) + 1):
            if self.frames_captured():
                break
            await asyncio.sleep(0.05)
        if self.frames_captured() == 0:
            log.error(
                "no frame captured in the whole run",
                cameras={c.name: c.describe() for c in self.config.pipeline.cameras},
                hint="see the capture node's 'source' errors above",
            )
            return False
        return True

    # -- heartbeats ---------------------------------------------------------------------------------------

    def _beat(self, msg: Stats) -> None:
        """Note a heartbeat of a child's current process (the proxy's stats/bus carry no pid)."""
        if msg.node == "bus":
            self._bus_beat = time.monotonic()  # ours or another host's: the path every heartbeat takes
        child = self.children.get("proxy" if msg.node == "bus" else msg.node)
        if child is None or child.proc is None:
            return
        pid = msg.counters.get("pid")
        if msg.node == "bus" or (pid is not None and int(pid) == child.proc.pid):
            child.last_beat = time.monotonic()
            child.beaten.set()

    def _silence(self, child: Child, until: float, since: float) -> float:
        """Seconds up to `until` the child's current process has been silent (since its start while it has
        not beaten), counted from `since` at the earliest."""
        beat = child.last_beat if child.last_beat is not None and child.last_beat >= child.started else None
        return until - max(beat if beat is not None else child.started, since)

    async def _watchdog(self) -> None:
        """Kill a wedged child (alive, heartbeat silent for `heartbeat_timeout_s`; never beaten for
        `startup_timeout_s` after a restart) with SIGKILL; its supervisor restarts it as after a crash, and a
        node that keeps wedging is given up like any crash loop. Every heartbeat travels through the proxy,
        so a node's silence counts only up to the proxy's latest heartbeat (stats/bus): while the bus is
        silent nobody can be heard, a wedged proxy is restarted alone, and once it is back the nodes get a
        whole timeout to be heard again."""
        timeout = self.sup.heartbeat_timeout_s
        if timeout is None:
            return
        period = min(1.0, timeout / 4)
        held = nodes_from = time.monotonic()  # silences count from these at the earliest
        while not self.stopping:
            before = time.monotonic()
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - before > period + 1.0:  # this loop was held up: heartbeats may wait unread
                held = nodes_from = now
                continue
            proxy = self.children.get("proxy")
            if proxy is not None and self._wedged(proxy, now, timeout, since=held):
                nodes_from = now
                continue
            heard = self._bus_beat  # the last moment anyone could have been heard
            if heard is None:
                continue
            for child in list(self.children.values()):
                if child is not proxy:
                    self._wedged(child, heard, timeout, since=nodes_from)

    def _wedged(self, child: Child, until: float, timeout: float, since: float) -> bool:
        """SIGKILL `child` if it was silent from `since` (at the earliest) to `until` for longer than allowed;
        True if it was."""
        proc = child.proc
        if self.stopping or child.gave_up or proc is None or proc.returncode is not None:
            return False
        silent = self._silence(child, until, since)
        started = child.last_beat is not None and child.last_beat >= child.started
        limit = timeout if started else self.sup.startup_timeout_s
        if silent <= limit:
            return False
        child.wedged += 1
        log.error(
            f"node {child.name} is wedged: no heartbeat for {silent:.1f} s "
            + (
                f"(supervisor.heartbeat_timeout_s={timeout})"
                if started
                else f"since its start (supervisor.startup_timeout_s={limit})"
            )
            + "; killing it to restart it",
            node=child.name,
            pid=proc.pid,
            silent_s=round(silent, 1),
            wedged=child.wedged,
        )
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.last_beat = None
        return True

    # -- bus side -----------------------------------------------------------------------------------------

    async def _connect(self) -> Subscriber:
        """Subscribe to stats, captions and events once the proxy answers (retrying while it starts)."""
        deadline = time.monotonic() + self.sup.startup_timeout_s
        while True:
            sub = Subscriber(self.config.bus, ["stats/", "captions/", "events/"], name="launcher")
            try:
                return await sub.start()
            except BusNotReady:
                sub.close()
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for the bus proxy", sub=self.config.bus.endpoint("sub"))

    async def _listen(self, sub: Subscriber) -> None:
        async for env in sub:
            msg = env.msg
            try:
                if isinstance(msg, Stats):
                    if msg.node not in self._stat_names:
                        continue
                    self.node_stats[msg.node] = msg.counters
                    self._beat(msg)
                    if msg.counters.get("ready") and msg.node in self._ready:
                        self._ready[msg.node].set()
                elif isinstance(msg, (Caption, Event)):
                    self.console.show(env.topic, msg)
            except Exception as exc:  # one odd message never stops the launcher's output
                if self._listen_errors.should_log(env.topic) is not None:
                    log.warning("cannot show message", topic=env.topic, error=f"{type(exc).__name__}: {exc}")

    async def _ready_or_given_up(self, name: str) -> None:
        ready = asyncio.ensure_future(self._ready[name].wait())
        gone = asyncio.ensure_future(self.children[name].done.wait())
        try:
            await asyncio.wait({ready, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            gone.cancel()
        if not self._ready[name].is_set():
            raise NodeGaveUp(f"node {name} gave up before it was ready (see its log lines above)")

    async def _wait_ready(self, names: list[str]) -> None:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self._ready_or_given_up(n) for n in names)), timeout=self.sup.startup_timeout_s
            )
        except TimeoutError:
            missing = [n for n in names if not self._ready[n].is_set()]
            raise TimeoutError(
                f"node(s) {missing} did not report ready within {self.sup.startup_timeout_s}s "
                "(see their log lines above)"
            ) from None

    # -- main ---------------------------------------------------------------------------------------------

    def bound_endpoints(self) -> list[str]:
        """The endpoints this pipeline's own processes bind (the proxy's, the world's, the encoder's)."""
        nodes, bus = self.config.pipeline.nodes, self.config.bus
        eps = [bus.endpoint("pub"), bus.endpoint("sub")] if self.config.pipeline.run_proxy else []
        if "world" in nodes:
            eps.append(bus.endpoint("rpc"))
        if "encoder" in nodes:
            eps += encoder_endpoints(self.config)
        return eps

    async def run(self, duration: float | None = None) -> int:
        """Start everything, print captions and events, stop on signal or after `duration` s of running.

        A second pipeline on endpoints a live one serves is refused here, before any child starts
        (EndpointInUseError): its nodes would otherwise join the first one's bus and crash-loop on binds."""
        ensure_runtime_dir(self.config.bus)
        for endpoint in self.bound_endpoints():
            refuse_live_ipc(endpoint)
        return await run_until_stopped(lambda: self._run(duration), on_stop=self.request_stop)

    async def _run(self, duration: float | None) -> int:
        self._config_file = self._write_config()
        listener: asyncio.Task | None = None
        watchdog: asyncio.Task | None = None
        sub: Subscriber | None = None
        code = 0
        try:
            if self.config.pipeline.run_proxy:
                self._start("proxy")
            sub = await self._connect()
            listener = asyncio.create_task(self._listen(sub))
            if self.record is not None:
                await self._start_recording()
            nodes = processes(self.config)
            first = [n for n in nodes if n != "capture"]
            for name in first:
                self._start(name)
            stop_wait = asyncio.create_task(self._stop.wait())
            ready = asyncio.create_task(self._wait_ready(first))
            await asyncio.wait({ready, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done() and any(c.gave_up for c in self.children.values()):
                await asyncio.wait({ready}, timeout=1.0)  # a stop that raced a give-up: still say why
            if ready.done():
                ready.result()
                if "capture" in nodes and not self._stop.is_set():
                    self._start("capture")
                    await self._wait_ready(["capture"])
                self._up = True
                log.info("pipeline up", nodes=nodes, cameras=[c.name for c in self.config.pipeline.cameras])
                watchdog = asyncio.create_task(self._watchdog(), name="heartbeat-watchdog")
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=duration)
                except TimeoutError:
                    if "capture" in nodes and not await self._saw_frames():
                        code = 1
            ready.cancel()
            stop_wait.cancel()
        except (TimeoutError, BusNotReady, NodeGaveUp, RecordingError) as exc:
            log.error("pipeline failed to start", error=str(exc))
            code = 1
        finally:
            if watchdog is not None:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            await self.stop()
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            if sub is not None:
                sub.close()
        gave_up = sorted(n for n, c in self.children.items() if c.gave_up)
        log.info(
            "pipeline stopped",
            restarts={n: c.restarts for n, c in self.children.items()},
            wedged={n: c.wedged for n, c in self.children.items() if c.wedged},
            gave_up=gave_up,
        )
        return 1 if gave_up else code
