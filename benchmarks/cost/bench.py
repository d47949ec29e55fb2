"""`perception bench cost`: what a minute of video costs with VL-JEPA + selective decoding and with a VLM.

The same held-out ShapesWorld streams (seeds 0..N-1, one synthetic camera each, all in one service,
paced in real time at 30 fps) go through the real service (`perception up` machinery: proxy and node
processes) twice, one mode after the other:

- jepa: the config's pipeline (default configs/tiny-cpu.yaml): the encoder embeds every window, the
  events node segments the stream online and the decoder captions each segment once;
- vlm: the same config with `pipeline.encoder.mode: vlm` and without events and decoder (as
  configs/tiny-vlm.yaml): the token-generative baseline captions every window.

Per minute of video (cameras x measured seconds), over the interval between two encoder heartbeats once
the first windows are due: model forward passes (jepa: encoder windows + decoder decodes; vlm: the
encoder's `vlm_forwards`, one LM pass per generated token, see perception/nodes/vlm_captions.py),
decoded tokens (jepa: the decoder counts none, so its caption texts are re-tokenized with the Y-decoder's
tokenizer, + EOS; vlm: the encoder's `vlm_tokens`), CPU-seconds of every process from /proc (psutil)
at those two heartbeats, caption latency (capture of the frame that closed the caption -> received here),
and caption CIDEr-D against the ground truth (benchmarks/cost/score.py) with a 95 % bootstrap interval
over streams. `cost_ratio`: the VLM's CPU-seconds per minute over VL-JEPA's, all processes; the target
(issue 16): at least 3x at equal or better CIDEr.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.cost.score import Scored, Span, paired_difference, score_streams
from benchmarks.pipeline.bench import _pct, _phase_config
from bus.message import Stats
from bus.pubsub import Subscriber
from perception.config import AppConfig, ConfigError, load_config
from perception.data.stream import ShapesStream
from perception.messages import Caption, GroundTruthSegment
from perception.nodes.launcher import Launcher
from perception.nodes.models import ModelUnavailableError, resolve_checkpoint, resolve_vlm_checkpoint, vlm_preflight

FPS = 30.0
SETTLE_S = 2.5  # after capture is up: the first windows need a window span of frames (1.9 s)
STREAM_MARGIN_S = 30.0  # streams outlast the run (start-up lag), so none ends or loops while measured
MODEL_NODES = ("encoder", "events", "decoder")
TARGET_RATIO = 3.0


@dataclass
class Beat:
    t: float  # monotonic time received
    counters: dict[str, float]
    cpu: dict[str, tuple[int, float]]  # process name -> (pid, CPU-seconds so far)


@dataclass
class Run:
    """What one mode's service run published, as received here."""

    captions: list[tuple[float, Caption]] = field(default_factory=list)  # (monotonic, caption)
    beats: list[Beat] = field(default_factory=list)  # encoder heartbeats
    truth: list[GroundTruthSegment] = field(default_factory=list)


def cpu_seconds(launcher: Launcher) -> dict[str, tuple[int, float]]:
    """User + system CPU-seconds of every child process (proxy and nodes), read from /proc by psutil."""
    out = {}
    for name, child in launcher.children.items():
        proc = child.proc
        if proc is None or proc.returncode is not None:
            continue
        try:
            t = psutil.Process(proc.pid).cpu_times()
        except psutil.Error:
            continue
        out[name] = (proc.pid, t.user + t.system)
    return out


def cpu_between(a: Beat, b: Beat) -> dict[str, float]:
    """CPU-seconds each process used from a to b (a process restarted meanwhile: its new pid's total)."""
    return {
        name: cpu - (a.cpu[name][1] if name in a.cpu and a.cpu[name][0] == pid else 0.0)
        for name, (pid, cpu) in b.cpu.items()
    }


async def listen(sub: Subscriber, launcher: Launcher, run: Run) -> None:
    async for env in sub:
        now, msg = time.monotonic(), env.msg
        if isinstance(msg, Caption):
            run.captions.append((now, msg))
        elif isinstance(msg, Stats) and msg.node == "encoder":
            run.beats.append(Beat(now, dict(msg.counters), cpu_seconds(launcher)))
        elif isinstance(msg, GroundTruthSegment):
            run.truth.append(msg)


async def service_run(config: AppConfig, seconds: float) -> tuple[Run, float]:
    """Run the service until `seconds` after the first windows are due, then stop it (what it publishes
    while stopping, e.g. the events node's last segments, is kept); returns the run and its start."""
    launcher = Launcher(config, out=io.StringIO())
    task = asyncio.create_task(launcher.run())
    run, sub, listener = Run(), None, None
    try:
        while "capture" not in launcher.node_stats:  # every node is up and capture has started
            if task.done():
                task.result()
                raise RuntimeError("the service stopped during start-up")
            await asyncio.sleep(0.1)
        t_up = time.monotonic()
        sub = await Subscriber(config.bus, ["captions/", "stats/encoder", "truth/"], name="bench-cost").start()
        listener = asyncio.create_task(listen(sub, launcher, run))
        await asyncio.sleep(SETTLE_S + seconds + 0.5)
    finally:
        launcher.request_stop()
        code = await task
        if listener is not None:
            await asyncio.sleep(0.3)  # the last captions, published as the nodes stopped
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if sub is not None:
            sub.close()
    if code:
        raise RuntimeError(f"the service exited with {code} (its log is above)")
    return run, t_up


@dataclass
class Part:
    """One service run of a mode: its config, what it published, its start, and the stream seeds it ran."""

    config: AppConfig
    run: Run
    t_up: float
    seeds: list[int]


def mode_figures(
    mode: str, parts: list[Part], streams: dict[int, ShapesStream], tokens_of
) -> tuple[dict[str, Any], Scored]:
    """The per-minute figures of one mode over its service runs, each measured between its first encoder
    heartbeat SETTLE_S after start-up and its last one before the stop; counts and CPU-seconds are summed
    over the runs, captions scored over every stream."""
    minutes = wall_total = windows = forwards = tokens = dropped = model_cpu = 0.0
    cpu_nodes: dict[str, float] = {}
    lat: list[float] = []
    n_captions = 0
    spans: list[list[Span]] = []
    truths = []
    truth_received = truth_ok = 0
    for part in parts:
        beats = [b for b in part.run.beats if b.t >= part.t_up + SETTLE_S]
        if len(beats) < 2:
            raise RuntimeError(f"{mode}: fewer than two encoder heartbeats while measuring")
        a, b = beats[0], beats[-1]
        wall_s = b.t - a.t
        wall_total += wall_s
        minutes += len(part.seeds) * wall_s / 60.0
        enc = {k: b.counters.get(k, 0.0) - a.counters.get(k, 0.0) for k in b.counters}
        inside = [c for t, c in part.run.captions if a.t < t <= b.t]
        n_captions += len(inside)
        lat += [(recv_ns(t) - c.t_capture_ns) / 1e6 for t, c in part.run.captions if a.t < t <= b.t]
        windows += enc.get("windows", 0.0)
        dropped += enc.get("windows_dropped", 0.0)
        if mode == "vlm":
            forwards += enc.get("vlm_forwards", 0.0)
            tokens += enc.get("vlm_tokens", 0.0)
        else:
            forwards += enc.get("windows", 0.0) + len(inside)  # each caption is one decode
            tokens += float(sum(tokens_of(c.text) for c in inside))
        for n, v in cpu_between(a, b).items():
            cpu_nodes["proxy" if n == "bus" else n] = cpu_nodes.get("proxy" if n == "bus" else n, 0.0) + v
            model_cpu += v if n in MODEL_NODES else 0.0
        by_cam = {c.name: k for k, c in enumerate(part.config.pipeline.cameras)}
        part_spans: list[list[Span]] = [[] for _ in part.seeds]
        for _, c in part.run.captions:  # every caption, those published while stopping too
            if c.cam in by_cam:
                part_spans[by_cam[c.cam]].append(Span(c.start_s, c.end_s, c.text))
        spans += part_spans
        truths += [streams[seed].segments for seed in part.seeds]
        planned = {
            (k, round(t.start_s, 6)): t.caption for k, seed in enumerate(part.seeds) for t in streams[seed].segments
        }
        truth_received += len(part.run.truth)
        truth_ok += sum(planned.get((by_cam.get(t.cam, -1), round(t.start_s, 6))) == t.text for t in part.run.truth)
    scored = score_streams(spans, truths)
    cider = scored.estimate().to_dict() if len(scored.per_caption) else {"value": None, "ci95": [None, None], "n": 0}
    config = parts[0].config
    token_source = "encoder.vlm_tokens" if mode == "vlm" else "caption texts, Y-decoder tokenizer"
    figures = {
        "mode": mode,
        "nodes": list(config.pipeline.nodes),
        "cameras": sum(len(p.seeds) for p in parts),
        "cameras_per_service": len(parts[0].seeds),
        "services_run": len(parts),
        "measured_s": round(wall_total, 2),
        "video_minutes": round(minutes, 3),
        "windows": windows,
        "windows_per_min": round(windows / minutes, 1),
        "windows_expected_per_min": round(FPS / config.pipeline.encoder.stride_frames * 60, 1),
        "windows_dropped": dropped,
        "captions": n_captions,
        "captions_per_min": round(n_captions / minutes, 1),
        "forwards": forwards,
        "forwards_per_min": round(forwards / minutes, 1),
        "decoded_tokens": tokens,
        "decoded_tokens_per_min": round(tokens / minutes, 1),
        "decoded_tokens_source": token_source,
        "cpu_s_per_min": round(sum(cpu_nodes.values()) / minutes, 3),
        "model_cpu_s_per_min": round(model_cpu / minutes, 3),
        "cpu_s_per_min_by_node": {n: round(v / minutes, 3) for n, v in sorted(cpu_nodes.items())},
        "caption_latency_p50_ms": _pct(lat, 50),
        "caption_latency_p99_ms": _pct(lat, 99),
        "cider": cider,
        "captions_scored": len(scored.per_caption),
        "captions_ambiguous": scored.ambiguous,
        "captions_unmatched": scored.unmatched,
        "truth_received": truth_received,
        "truth_matching_plan": truth_ok,
    }
    return figures, scored


_MONO_TO_NS = time.time_ns() - time.monotonic_ns()


def recv_ns(t_monotonic: float) -> int:
    """A monotonic receive time on the wall clock (what t_capture_ns is on)."""
    return int(t_monotonic * 1e9) + _MONO_TO_NS


def mode_configs(base: AppConfig, rdir: Path, seeds: list[int], seconds: float, vlm_checkpoint: str | None):
    """(jepa, vlm) configs: the base pipeline with one held-out synthetic camera per seed (seed k on camk),
    and the same with the encoder in vlm mode and no events or decoder."""
    out = []
    for mode in ("jepa", "vlm"):
        cfg = _phase_config(base, rdir / mode, fps=FPS)  # private runtime dir, one synthetic camera
        data = cfg.model_dump(mode="json")
        cam = dict(data["pipeline"]["cameras"][0], loop=False, split="heldout")
        cam["duration_s"] = seconds + SETTLE_S + STREAM_MARGIN_S
        data["pipeline"]["cameras"] = [dict(cam, name=f"cam{k}", seed=k) for k in seeds]
        if mode == "vlm":
            data["pipeline"]["encoder"]["mode"] = "vlm"
            if vlm_checkpoint:
                data["pipeline"]["encoder"]["vlm_checkpoint"] = vlm_checkpoint
            data["pipeline"]["nodes"] = [n for n in data["pipeline"]["nodes"] if n not in ("events", "decoder")]
        else:  # the full pipeline, whatever the base config leaves out
            data["pipeline"]["encoder"]["mode"] = "jepa"
            data["pipeline"]["nodes"] += [n for n in ("events", "decoder") if n not in data["pipeline"]["nodes"]]
        out.append(AppConfig.model_validate(data))
    return out


def preflight(jepa: AppConfig, vlm: AppConfig) -> list[str]:
    problems = [f"{w}: {m}" for w, m in vlm_preflight(vlm.pipeline.encoder)]
    try:
        resolve_checkpoint(jepa.model)
    except ModelUnavailableError as exc:
        problems.append(f"model.checkpoint: {exc}")
    if problems:
        return problems
    vlm_dir = resolve_vlm_checkpoint(vlm.pipeline.encoder)
    source = (vlm_dir / json.loads((vlm_dir / "vlm.json").read_text())["source"]).resolve()
    jepa_dir = resolve_checkpoint(jepa.model)
    if jepa_dir is None or jepa_dir.resolve() != source:
        print(f"warning: the VLM was trained on {source}, the jepa mode runs {jepa_dir}: not a controlled comparison")
    return []


def token_counter(config: AppConfig):
    """text -> tokens the Y-decoder generated for it (its tokenizer's ids + EOS, capped at max_tokens - 1)."""
    from perception.nodes.models import load_model

    model, _ = load_model(config.model, 1)
    dec = model.y_decoder
    cap = dec.cfg.max_tokens - 1

    def count(text: str) -> int:
        return min(len(dec.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1, cap)

    return count


def table(jepa: dict, vlm: dict, ratio: float, diff: dict) -> str:
    def row(label: str, key: str, fmt: str = "{:.1f}") -> str:
        a, b = jepa.get(key), vlm.get(key)
        r = f"{b / a:8.2f}x" if isinstance(a, int | float) and isinstance(b, int | float) and a else ""
        show = [fmt.format(v) if isinstance(v, int | float) else str(v) for v in (a, b)]
        return f"{label:34s}{show[0]:>12s}{show[1]:>12s}  {r}"

    def cider(m: dict) -> str:
        c = m["cider"]
        return "n/a" if c["value"] is None else f"{c['value']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"

    lines = [
        f"{'per minute of video':34s}{'jepa':>12s}{'vlm':>12s}  vlm/jepa",
        row("video minutes measured", "video_minutes", "{:.2f}"),
        row("windows", "windows_per_min"),
        row("captions", "captions_per_min"),
        row("model forward passes", "forwards_per_min"),
        row("decoded tokens", "decoded_tokens_per_min"),
    ]
    for node in sorted(set(jepa["cpu_s_per_min_by_node"]) | set(vlm["cpu_s_per_min_by_node"])):
        a, b = jepa["cpu_s_per_min_by_node"].get(node), vlm["cpu_s_per_min_by_node"].get(node)
        fa, fb = (f"{v:.2f}" if v is not None else "-" for v in (a, b))
        lines.append(f"{'CPU-s  ' + node:34s}{fa:>12s}{fb:>12s}")
    lines += [
        row("CPU-s  model nodes", "model_cpu_s_per_min", "{:.2f}"),
        row("CPU-s  total", "cpu_s_per_min", "{:.2f}"),
        row("caption latency p50 (ms)", "caption_latency_p50_ms", "{:.0f}"),
        row("caption latency p99 (ms)", "caption_latency_p99_ms", "{:.0f}"),
        row("windows dropped (stale)", "windows_dropped", "{:.0f}"),
        f"{'caption CIDEr-D [95 % CI]':34s}{cider(jepa):>26s}   {cider(vlm)}",
        f"cost ratio (VLM CPU-s / VL-JEPA CPU-s per minute): {ratio:.2f}x (target >= {TARGET_RATIO:.0f}x); "
        f"CIDEr jepa - vlm {diff['value']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    streams = args.streams or (2 if args.quick else 4)
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    try:
        base = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(exc)
        return 2
    if args.checkpoint:
        base.model.checkpoint = args.checkpoint
    per_service = min(args.per_service or streams, streams)
    groups = [list(range(k, min(k + per_service, streams))) for k in range(0, streams, per_service)]
    rdir = Path(tempfile.mkdtemp(prefix="bench-cost-", dir="/tmp"))
    try:
        configs = [mode_configs(base, rdir, seeds, seconds, args.vlm_checkpoint) for seeds in groups]
        jepa_cfg, vlm_cfg = configs[0]
        problems = preflight(jepa_cfg, vlm_cfg)
        if problems:
            print("perception bench cost: cannot run:\n  " + "\n  ".join(problems))
            return 2
        cam = jepa_cfg.pipeline.cameras[0]
        truth = {
            k: ShapesStream(seed=k, split=cam.split, duration_s=cam.duration_s, fps=FPS, size=cam.size)
            for k in range(streams)
        }
        print(
            f"{streams} held-out streams x {seconds:.0f} s at {FPS:.0f} fps, {per_service} camera(s) per service, "
            f"{len(groups)} service run(s) per mode"
        )
        modes: dict[str, dict] = {}
        scored: dict[str, Scored] = {}
        parts: dict[str, list[Part]] = {"jepa": [], "vlm": []}
        for mode, k in (("jepa", 0), ("vlm", 1)):
            for seeds, pair in zip(groups, configs, strict=True):
                cfg = pair[k]
                print(f"mode {mode}: cameras {seeds}, nodes {', '.join(cfg.pipeline.nodes)} ...", flush=True)
                parts[mode].append(Part(cfg, *asyncio.run(service_run(cfg, seconds)), seeds))
        count = token_counter(jepa_cfg)  # after the runs: loading a model here takes no CPU from them
        for mode, mode_parts in parts.items():
            modes[mode], scored[mode] = mode_figures(mode, mode_parts, truth, count)
        ratio = modes["vlm"]["cpu_s_per_min"] / modes["jepa"]["cpu_s_per_min"]
        diff = paired_difference(scored["jepa"], scored["vlm"], streams).to_dict()
        print(table(modes["jepa"], modes["vlm"], ratio, diff))
        jc, vc = modes["jepa"]["cider"]["value"], modes["vlm"]["cider"]["value"]
        result = {
            "modes": modes,
            "cost_ratio": round(ratio, 3),
            "cost_ratio_model_nodes": round(
                modes["vlm"]["model_cpu_s_per_min"] / modes["jepa"]["model_cpu_s_per_min"], 3
            ),
            "forwards_ratio": round(modes["vlm"]["forwards_per_min"] / modes["jepa"]["forwards_per_min"], 3),
            "decoded_tokens_ratio": round(
                modes["vlm"]["decoded_tokens_per_min"] / modes["jepa"]["decoded_tokens_per_min"], 3
            )
            if modes["jepa"]["decoded_tokens_per_min"]
            else None,
            "cider_difference_jepa_minus_vlm": diff,
            "target": {
                "cost_ratio_at_least": TARGET_RATIO,
                "met": bool(ratio >= TARGET_RATIO and jc is not None and vc is not None and jc >= vc),
            },
            "streams": {
                "split": "heldout",
                "seeds": list(range(streams)),
                "seconds": seconds,
                "fps": FPS,
                "cameras_per_service": per_service,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            },
            "command": "perception bench cost"
            + (" --quick" if args.quick else "")
            + (f" --streams {args.streams}" if args.streams else "")
            + (f" --seconds {args.seconds:g}" if args.seconds else "")
            + (f" --per-service {args.per_service}" if args.per_service else ""),
        }
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=2))
        return 0
    finally:
        shutil.rmtree(rdir, ignore_errors=True)
