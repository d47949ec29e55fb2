"""The soak: `python -m tests.faults.soak [--minutes 30] [--json OUT] [--png OUT]`.

A command that prints figures and verdicts (`make soak`), not a timed test. One live session
(tests/faults/session.py: `perception up` on configs/tiny-cpu.yaml with checkpoints/tiny, `perception record`
beside it) with a skill attached (`perception skill narrator`, a real subscriber printing every caption).
After `--warm-up-s` it measures for `--minutes`, split into `--buckets` equal buckets (5 minutes each at the
default 30):

- RSS of every process (launcher, proxy, nodes, recorder, skill) every `--sample-s`: growth is the median
  of the last three samples over the median of the first three (after the warm-up); target < 5 %.
- embedding latency (received at the observer - capture time of the window's last frame) and caption
  latency (caption published - end of its segment) p50/p99 per bucket; target: every bucket's p99 within
  20 % of the buckets' median p99.
- dropped frames and windows: the nodes' own drop, gap and stale counters on stats/ over the measured
  span, and messages missing by seq at the observer per topic.
- restarts: a process whose pid changed (none should).
- the recorder's files (`--split-duration`/`--split-size` passed to its `perception record`): how many,
  whether each is complete for the official mcap reader, and messages missing or repeated by seq across
  the files' boundaries.

Exit status 1 when a process restarted or the skill received no caption; the targets are reported as met
or missed (`--strict` makes a miss fail too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import structlog

from tests.faults.session import REPO, TRAINED, Session, child_env

RSS_GROWTH_TARGET = 0.05
SPLIT_RECORDER_FLAT = 0.01  # a recorder that starts new files holds no per-file state: flat within 1 %
P99_FLAT_TARGET = 0.20
DROP_WORDS = ("drop", "gap", "stale", "superseded", "lost")
log = structlog.get_logger("soak")


def start_skill(session: Session, out: Path) -> subprocess.Popen:
    with open(out, "wb") as so:
        return subprocess.Popen(
            [sys.executable, "-m", "perception.cli", "skill", "narrator", "--config", str(session.config_path)],
            cwd=REPO,
            env=child_env("WARNING"),
            stdin=subprocess.DEVNULL,
            stdout=so,
            stderr=subprocess.DEVNULL,
        )


def drop_counters(stats: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Every numeric stats/ counter that counts something lost, as `node.counter`."""
    return {
        f"{node}.{key}": float(v)
        for node, counters in stats.items()
        for key, v in counters.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and any(w in key for w in DROP_WORDS)
    }


def recorder_files(out: Path, *, split: bool) -> dict[str, Any]:
    """The recording's files read back with the official mcap reader: complete ones (summary present),
    messages, and per (src, topic) stream the seqs missing or repeated where one file ends and the next begins."""
    import msgpack
    from mcap.reader import make_reader

    from bus.record import split_paths

    paths = split_paths(out) if split else [out]
    complete = messages = missing = repeated = 0
    last: dict[tuple[str, str], int] = {}
    for path in paths:
        seen_here: set[tuple[str, str]] = set()
        with open(path, "rb") as f:
            reader = make_reader(f)
            complete += reader.get_summary() is not None
            for _s, channel, message in reader.iter_messages(log_time_order=False):
                messages += 1
                header = msgpack.unpackb(message.data, raw=False)[0]
                key, seq = (header["src"], channel.topic), header["seq"]
                if key not in seen_here:  # the stream's first message in this file: follows the previous file's?
                    seen_here.add(key)
                    prev = last.get(key)
                    if prev is not None and seq > prev + 1:
                        missing += seq - prev - 1
                    elif prev is not None and seq <= prev:
                        repeated += 1
                last[key] = seq
    return {
        "files": len(paths),
        "complete": complete,
        "messages": messages,
        "sizes_mb": [round(p.stat().st_size / 1e6, 2) for p in paths],
        "boundary_missing": missing,
        "boundary_repeated": repeated,
    }


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    a = np.asarray(values)
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
    }


def flatness(p99s: list[float | None]) -> float | None:
    """The largest deviation of a bucket's p99 from the buckets' median p99 (0.1 = 10 %)."""
    vals = [v for v in p99s if v is not None]
    if len(vals) < 2:
        return None
    mid = statistics.median(vals)
    return round(max(abs(v - mid) for v in vals) / mid, 3) if mid > 0 else None


def rss_growth_mb(samples: list[float]) -> float | None:
    if len(samples) < 6:
        return None
    return round(statistics.median(samples[-3:]) - statistics.median(samples[:3]), 2)


def rss_growth(samples: list[float]) -> float | None:
    if len(samples) < 6:
        return None
    first, last = statistics.median(samples[:3]), statistics.median(samples[-3:])
    return round(last / first - 1.0, 4)


async def soak(opts: argparse.Namespace) -> dict[str, Any]:
    split_args = [*(["--split-duration", str(opts.split_duration)] if opts.split_duration else [])]
    split_args += ["--split-size", opts.split_size] if opts.split_size else []
    session = Session(
        Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp")),
        checkpoint=Path(opts.checkpoint),
        recorder=True,
        recorder_args=split_args,
    )
    files: dict[str, Any] = {}
    skill: subprocess.Popen | None = None
    control: subprocess.Popen | None = None
    try:
        await session.start()
        skill_out = session.workdir / "narrator.out"
        skill = start_skill(session, skill_out)
        await session.until(
            lambda: skill_out.read_text().startswith("skill narrator ready"), timeout=60, what="the skill to start"
        )
        if split_args:  # the same recorder without splitting, side by side: what the split changes
            control = session.record(session.workdir / "control.mcap", [])
            await session.until(
                lambda: (session.workdir / "control.out").read_text().startswith("recording"),
                timeout=60,
                what="the unsplit control recorder to start",
            )
        log.info("soak.up", warm_up_s=opts.warm_up_s, minutes=opts.minutes)
        await asyncio.sleep(opts.warm_up_s)
        obs = session.observer
        pids0 = {**session.pids(), "skill.narrator": skill.pid}
        if control is not None:
            pids0["recorder.unsplit"] = control.pid
        procs = {name: psutil.Process(pid) for name, pid in pids0.items()}
        drops0 = drop_counters(obs.stats)
        gaps0, n_lat0, n_cap0 = len(obs.gaps), len(obs.latency_ms), len(obs.captions)
        mono0, wall0 = time.monotonic(), time.time_ns()
        span = opts.minutes * 60.0
        samples: list[dict[str, Any]] = []
        while (elapsed := time.monotonic() - mono0) < span:
            row: dict[str, Any] = {"t_s": round(elapsed, 1)}
            for name, proc in procs.items():
                with contextlib.suppress(psutil.Error):
                    row[name] = round(proc.memory_info().rss / 1e6, 2)
            samples.append(row)
            if len(samples) % max(1, int(60 / opts.sample_s)) == 0:
                log.info("soak.progress", minute=round(elapsed / 60, 1), of=opts.minutes, rss_mb=row)
            await asyncio.sleep(min(opts.sample_s, max(0.0, span - elapsed)))
        pids1 = {**session.pids(), "skill.narrator": skill.pid if skill.poll() is None else None}
        if control is not None:
            pids1["recorder.unsplit"] = control.pid if control.poll() is None else None
            control.send_signal(signal.SIGINT)
            await asyncio.to_thread(control.wait, 30)
        drops1 = drop_counters(obs.stats)
        skill_lines = len(skill_out.read_text().splitlines()) - 1  # every line after `ready`: one caption
        await session.stop()
        files = recorder_files(session.recordings[-1], split=bool(split_args))
    finally:
        for proc in (skill, control):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
        session.cleanup()

    width = span / opts.buckets
    buckets = []
    for b in range(opts.buckets):
        lo, hi = mono0 + b * width, mono0 + (b + 1) * width
        emb = [ms for mono, ms in obs.latency_ms[n_lat0:] if lo <= mono < hi]
        lo_ns, hi_ns = wall0 + int(b * width * 1e9), wall0 + int((b + 1) * width * 1e9)
        cap = [(t - end) / 1e6 for t, _, _, _, end in obs.captions[n_cap0:] if lo_ns <= t < hi_ns]
        buckets.append(
            {"from_min": round(b * width / 60, 2), "embedding": percentiles(emb), "caption": percentiles(cap)}
        )
    names = list(procs)
    rss = {name: [s[name] for s in samples if name in s] for name in names}
    missing: dict[str, int] = {}
    for _, _, topic, n, _, _ in obs.gaps[gaps0:]:
        missing[topic.split("/")[0] + "/"] = missing.get(topic.split("/")[0] + "/", 0) + n
    res: dict[str, Any] = {
        "minutes": opts.minutes,
        "warm_up_s": opts.warm_up_s,
        "sample_s": opts.sample_s,
        "samples": samples,
        "rss_growth": {name: rss_growth(v) for name, v in rss.items()},
        "rss_growth_mb": {name: rss_growth_mb(v) for name, v in rss.items()},
        "rss_mb": {name: {"first": v[0], "max": max(v), "last": v[-1]} for name, v in rss.items() if v},
        "buckets": buckets,
        "embedding_p99_flatness": flatness([b["embedding"]["p99_ms"] for b in buckets]),
        "caption_p99_flatness": flatness([b["caption"]["p99_ms"] for b in buckets]),
        "dropped": {k: drops1.get(k, 0.0) - v for k, v in {**drops1, **drops0}.items() if drops1.get(k, 0.0) != v},
        "missing_by_seq": missing,
        "restarted": sorted(n for n, p in pids0.items() if pids1.get(n) != p),
        "embeddings": len(obs.latency_ms) - n_lat0,
        "captions": len(obs.captions) - n_cap0,
        "skill_captions": skill_lines,
        "recorder_split": split_args,
        "recorder_files": files,
    }
    res["verdicts"] = verdicts(res)
    return res


def verdicts(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    growth = {k: v for k, v in res["rss_growth"].items() if v is not None}
    worst = max(growth, key=lambda k: growth[k]) if growth else None
    out = {
        "rss_growth_under_5pct": {
            "ok": bool(growth) and all(v < RSS_GROWTH_TARGET for v in growth.values()),
            "detail": f"worst {worst} {growth[worst]:+.1%}" if worst else "too few samples",
        },
        "no_restart": {"ok": not res["restarted"], "detail": f"restarted {res['restarted']}"},
        "skill_got_captions": {"ok": res["skill_captions"] > 0, "detail": f"{res['skill_captions']} captions"},
    }
    if res.get("recorder_split") and "recorder" in growth:
        rf = res["recorder_files"]
        out["split_recorder_rss_flat_within_1pct"] = {
            "ok": abs(growth["recorder"]) < SPLIT_RECORDER_FLAT,
            "detail": f"recorder {growth['recorder']:+.2%} ({res['rss_growth_mb']['recorder']:+.2f} MB)"
            + (f", unsplit beside it {growth['recorder.unsplit']:+.2%}" if "recorder.unsplit" in growth else "")
            + (f" ({res['rss_growth_mb']['recorder.unsplit']:+.2f} MB)" if "recorder.unsplit" in growth else ""),
        }
        out["split_files_complete_and_continuous"] = {
            "ok": rf["files"] == rf["complete"] > 1 and rf["boundary_missing"] == rf["boundary_repeated"] == 0,
            "detail": f"{rf['complete']}/{rf['files']} complete, {rf['boundary_missing']} missing and "
            f"{rf['boundary_repeated']} repeated across boundaries",
        }
    for kind in ("embedding", "caption"):
        f = res[f"{kind}_p99_flatness"]
        out[f"{kind}_p99_flat_within_20pct"] = {
            "ok": f is not None and f <= P99_FLAT_TARGET,
            "detail": "too few buckets" if f is None else f"largest deviation from the median bucket {f:.1%}",
        }
    return out


def render(res: dict[str, Any]) -> str:
    lines = [f"soak {res['minutes']} min after {res['warm_up_s']:.0f} s warm-up, RSS every {res['sample_s']:.0f} s"]
    lines.append(f"{'process':16s} {'RSS first MB':>12s} {'max MB':>8s} {'last MB':>8s} {'growth':>8s} {'MB':>6s}")
    for name, r in res["rss_mb"].items():
        g, mb = res["rss_growth"][name], res.get("rss_growth_mb", {}).get(name)
        lines.append(
            f"{name:16s} {r['first']:12.1f} {r['max']:8.1f} {r['last']:8.1f} {'-' if g is None else f'{g:+.2%}':>8s}"
            f" {'-' if mb is None else f'{mb:+.2f}':>6s}"
        )
    lines.append(
        f"{'bucket from min':>15s} {'emb n':>6s} {'p50 ms':>7s} {'p99 ms':>7s} | {'cap n':>5s} {'p50 ms':>7s} {'p99 ms':>7s}"
    )
    for b in res["buckets"]:
        e, c = b["embedding"], b["caption"]

        def f(v):
            return "-" if v is None else f"{v:.0f}"

        lines.append(
            f"{b['from_min']:15.1f} {e['n']:6d} {f(e['p50_ms']):>7s} {f(e['p99_ms']):>7s} | "
            f"{c['n']:5d} {f(c['p50_ms']):>7s} {f(c['p99_ms']):>7s}"
        )
    lines.append(
        f"embeddings {res['embeddings']}, captions {res['captions']} over the span "
        f"(at the skill, since its start: {res['skill_captions']})"
    )
    lines.append(f"dropped (stats/ counters over the span): {res['dropped'] or 'none'}")
    lines.append(f"missing by seq at the observer: {res['missing_by_seq'] or 'none'}")
    rf = res.get("recorder_files") or {}
    if rf:
        lines.append(
            f"recorder {' '.join(res['recorder_split']) or 'unsplit'}: {rf['files']} files, {rf['complete']} complete "
            f"for the official mcap reader, {rf['messages']} messages, across file boundaries "
            f"{rf['boundary_missing']} missing and {rf['boundary_repeated']} repeated by seq"
        )
    for name, v in res["verdicts"].items():
        lines.append(f"[{'  ok' if v['ok'] else 'MISS'}] {name}: {v['detail']}")
    return "\n".join(lines)


def plot(res: dict[str, Any], out: Path) -> None:
    from perception.plots import pyplot, save_figure

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, r in res["rss_mb"].items():  # relative: the target is on growth, and RSS spans 60-550 MB
        pts = [(s["t_s"] / 60, 100.0 * (s[name] / r["first"] - 1.0)) for s in res["samples"] if name in s]
        ax1.plot(*zip(*pts), label=f"{name} ({r['first']:.0f} MB)")
    ax1.axhline(100 * RSS_GROWTH_TARGET, color="red", ls=":", lw=1, label="target +5 %")
    ax1.set_ylabel("RSS vs first sample (%)")
    ax1.set_title(f"Soak: tiny pipeline, synthetic camera, recorder + skill, {res['minutes']:g} min")
    ax1.legend(fontsize=7, ncol=4, loc="upper left")
    ax1.grid(alpha=0.3)
    width = res["minutes"] / len(res["buckets"])
    mids = [b["from_min"] + width / 2 for b in res["buckets"]]
    for kind, marker in (("embedding", "o"), ("caption", "s")):
        ax2.plot(mids, [b[kind]["p99_ms"] for b in res["buckets"]], marker=marker, label=f"{kind} p99")
        ax2.plot(
            mids, [b[kind]["p50_ms"] for b in res["buckets"]], marker=marker, ls="--", alpha=0.6, label=f"{kind} p50"
        )
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (ms, log)")
    ax2.set_xlabel("minutes after warm-up")
    ax2.legend(fontsize=8, ncol=2)
    ax2.grid(alpha=0.3, which="both")
    save_figure(fig, out, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="measured minutes (after the warm-up)")
    p.add_argument("--warm-up-s", type=float, default=60.0, help="seconds after start-up before measuring")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--buckets", type=int, default=6, help="latency buckets over the measured span")
    p.add_argument("--checkpoint", default=str(TRAINED))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--png", type=Path, default=None)
    p.add_argument("--strict", action="store_true", help="a missed target fails too")
    p.add_argument("--split-duration", type=float, default=None, help="the recorder's --split-duration (seconds)")
    p.add_argument("--split-size", default=None, help="the recorder's --split-size (e.g. 64MB)")
    p.add_argument("--replot", type=Path, default=None, help="draw --png from this result JSON, run nothing")
    opts = p.parse_args(argv)
    if opts.replot is not None:
        plot(json.loads(opts.replot.read_text()), opts.png)
        return 0
    res = asyncio.run(soak(opts))
    print(render(res), flush=True)
    if opts.json is not None:
        opts.json.write_text(json.dumps(res, indent=1))
    if opts.png is not None:
        plot(res, opts.png)
    hard = ("no_restart", "skill_got_captions")
    failed = [n for n, v in res["verdicts"].items() if not v["ok"] and (opts.strict or n in hard)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
