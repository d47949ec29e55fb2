"""Fault campaign against a live synthetic session: `python -m tests.faults.campaign [--rounds 5] [--json OUT]`.

What runs (tests/faults/session.py): `perception up` on configs/tiny-cpu.yaml with checkpoints/tiny and a
persisted world memory, `perception record` beside it, and an observer on every topic in this process.

Scenarios, in this order:
1. SIGKILL, round-robin, `--rounds` times each: capture, encoder, events, decoder, world, proxy, recorder,
   launcher. The launcher takes its children with it (PR_SET_PDEATHSIG) and is started again here, as a
   service manager would; the recorder is restarted here into a new file. Rounds space a node's kills
   beyond `supervisor.stable_after_s`, so none of them is a crash loop.
2. SIGSTOP once each: capture, encoder, events, decoder, world, proxy: the launcher must find the
   silent heartbeat and restart the node within `supervisor.heartbeat_timeout_s` (+ one heartbeat).
3. The recorder on a full disk (a 1 MiB tmpfs) and on a read-only one (root only; skipped otherwise): a
   clear error, the pipeline unaffected, the file so far readable by the official mcap reader. (A disk
   remounted read-only under a running recorder is not a case: Linux refuses the remount, EBUSY, while a
   file is open for writing.)
4. World memory and segment ids after all of it (session.world_check).
5. A crash loop: the decoder killed each time it is ready until the launcher gives it up (one error
   line), while the rest keeps running.

Per fault it reports ready_s, output_s, losses by seq on reliable topics of the processes that did not
die, inputs the dead process missed, and which other processes were restarted (session.py says how each
is measured). Checks (exit 1 if one fails): no loss on reliable topics of processes that did not die, no
other process restarted (but by the launcher), world consistent, wedges caught, crash loop given up, the
disk scenarios. The recovery target (< 3 s: output_s, or ready_s for events/decoder/recorder whose output
waits for the next segment) is reported as met or missed; `--strict` makes a miss fail too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.faults.session import NODES, SPARSE, TRAINED, FaultResult, Session, _alive, child_env

KILL_ORDER = ("capture", "encoder", "events", "decoder", "world", "proxy", "recorder", "launcher")
WEDGE_ORDER = ("capture", "encoder", "events", "decoder", "world", "proxy")
TARGET_S = 3.0


def recovery_s(r: FaultResult) -> float | None:
    """The figure the < 3 s target is judged on (see the module docstring)."""
    if r.target in SPARSE or r.target == "recorder":
        return r.ready_s
    return r.output_s


# -- the recorder's disk ------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, size: str, ro: bool = False):
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def official_read(path: Path) -> tuple[int, str | None]:
    """Messages the official mcap reader (NonSeekingReader: no footer needed) gets from `path`, and why it
    stopped early if it did (a recording cut by a full disk ends mid-chunk)."""
    from mcap.reader import NonSeekingReader

    n = 0
    try:
        with open(path, "rb") as f:
            for _ in NonSeekingReader(f).iter_messages(log_time_order=False):  # file order, streamed
                n += 1
    except Exception as exc:  # the cut tail: what came before it was read
        return n, f"{type(exc).__name__}: {exc}"[:200]
    return n, None


async def run_record(session: Session, out: Path, *extra: str):
    """`perception record OUT` on the live session until it exits by itself; (rc, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perception.cli",
        "record",
        str(out),
        "--config",
        str(session.config_path),
        "--compression",
        "none",
        "--flush-interval",
        "0.2",
        *extra,
        env=child_env("WARNING"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return proc.returncode, err.decode(errors="replace")


async def disk_scenarios(session: Session, windows: list[FaultResult]) -> dict[str, Any]:
    """Each case's result; its window goes to `windows` (what the bus lost meanwhile is attributed later)."""
    out: dict[str, Any] = {}
    base = session.workdir / "disks"
    try:
        with tmpfs(base / "probe", "64k"):
            pass
    except (OSError, subprocess.CalledProcessError) as exc:
        return {"skipped": f"cannot mount a tmpfs here (root and mount(8) needed): {exc}"}
    cases = [
        ("full_disk", "1m", False, ["--topics", "frames/", "embeddings/"]),
        ("read_only", "1m", True, ["--topics", "frames/"]),
    ]
    for name, size, ro, topics in cases:
        pids0 = session.pids()
        window = FaultResult(f"recorder {name}", "disk", wall0=time.time_ns())
        with tmpfs(base / name, size, ro=ro) as disk:
            path = disk / "session.mcap"
            rc, err = await run_record(session, path, *topics)
            line = next((x for x in err.splitlines() if x.startswith("perception record:")), err.strip()[-300:])
            official, stopped = official_read(path) if path.exists() else (0, "no file")
        await asyncio.sleep(1.0)
        window.wall_end = time.time_ns()
        windows.append(window)
        restarted = sorted(n for n, p in pids0.items() if session.pids().get(n) != p)
        out[name] = {
            "rc": rc,
            "error": line,
            "official_reader_messages": official,
            "official_reader_stopped": stopped,
            "pipeline_lost": window.lost,  # filled in by Session.attribute_losses
            "restarted": restarted,
        }
    return out


# -- the campaign -------------------------------------------------------------------------------------------


async def crash_loop(session: Session, windows: list[FaultResult]) -> dict[str, Any]:
    """Kill the decoder each time it is ready until the launcher gives it up; the rest must keep running."""
    limit = session.config.pipeline.supervisor.max_restarts
    window = FaultResult("decoder", "crash-loop", wall0=time.time_ns(), own={"decoder"})
    offset = session.launcher_log.stat().st_size  # the launcher's log from here on

    def log_since() -> str:
        return session.launcher_log.read_bytes()[offset:].decode(errors="replace")

    kills = 0
    pids0 = {n: p for n, p in session.pids().items() if n != "decoder"}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        pid = session.pids().get("decoder")
        if pid is None:
            if "gave up" in log_since():
                break
            await asyncio.sleep(0.1)
            continue
        with contextlib.suppress(TimeoutError):  # killed once it serves: a node that fails after start-up
            await session.until(
                lambda pid=pid: (
                    session.observer.stats.get("decoder", {}).get("pid") == pid
                    and session.observer.stats["decoder"].get("ready") == 1
                ),
                timeout=60,
                what="the decoder to be ready",
            )
        os.kill(pid, signal.SIGKILL)
        kills += 1
        await session.until(lambda pid=pid: not _alive(pid), timeout=30, what="the killed decoder to go")
        await asyncio.sleep(0.2)
    wall = time.time_ns()
    await asyncio.sleep(3.0)
    lines = [json.loads(x) for x in log_since().splitlines() if x.startswith("{") and "gave up:" in x]
    flowing = session.observer.first("embeddings/", after_ns=wall) is not None
    pids1 = session.pids()
    window.wall_end = time.time_ns()
    windows.append(window)
    return {
        "lost_by_the_rest": window.lost,  # filled in by Session.attribute_losses
        "kills": kills,
        "max_restarts": limit,
        "gave_up_lines": len(lines),
        "gave_up_line": lines[0]["event"] if lines else None,
        "others_restarted": sorted(n for n, p in pids0.items() if pids1.get(n) != p),
        "embeddings_after_give_up": flowing,
    }


def summarise(results: list[FaultResult]) -> dict[str, dict[str, Any]]:
    by: dict[str, list[FaultResult]] = {}
    for r in results:
        by.setdefault(f"{r.target}:{r.signal}", []).append(r)
    out = {}
    for key, rs in by.items():

        def stat(vals):
            vals = [v for v in vals if v is not None]
            return (
                {"median": round(statistics.median(vals), 2), "max": round(max(vals), 2), "n": len(vals)}
                if vals
                else None
            )

        lost: dict[str, int] = {}
        in_flight: dict[str, int] = {}
        missed: dict[str, int] = {}
        for r in rs:
            for into, counts in ((lost, r.lost), (in_flight, r.lost_in_flight), (missed, r.missed)):
                for t, n in counts.items():
                    into[t] = into.get(t, 0) + n
        out[key] = {
            "faults": len(rs),
            "ready_s": stat([r.ready_s for r in rs]),
            "output_s": stat([r.output_s for r in rs]),
            "gone_s": stat([r.gone_s for r in rs]),
            "recovery_s": stat([recovery_s(r) for r in rs]),
            "lost": lost,
            "lost_in_flight": in_flight,
            "faults_losing_in_flight": sum(bool(r.lost_in_flight) for r in rs),
            "missed": missed,
            "restarted": sorted({n for r in rs for n in r.restarted}),
            "timeouts": [r.notes["timeout"] for r in rs if "timeout" in r.notes],
            "notes": [r.notes for r in rs if r.notes],
        }
    return out


async def campaign(opts: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="flt-", dir="/tmp"))
    overrides: dict[str, Any] = {}
    if opts.heartbeat_timeout is not None:
        overrides = {"pipeline": {"supervisor": {"heartbeat_timeout_s": opts.heartbeat_timeout}}}
    session = Session(workdir, checkpoint=Path(opts.checkpoint), overrides=overrides, recorder="recorder" in opts.kill)
    results: list[FaultResult] = []
    res: dict[str, Any] = {"options": vars(opts) | {"checkpoint": str(opts.checkpoint)}}
    t0 = time.monotonic()
    try:
        await session.start()
        res["start_s"] = round(time.monotonic() - t0, 1)
        print(f"pipeline up in {res['start_s']} s (workdir {workdir})", flush=True)
        with contextlib.suppress(TimeoutError):  # a caption first: every node has done its job once
            await session.until(lambda: session.observer.captions, timeout=opts.warm_up, what="a first caption")
        await asyncio.sleep(2.0)
        for rnd in range(opts.rounds):
            for target in opts.kill:
                r = await session.fault(target, signal.SIGKILL, settle_s=opts.settle, jitter_s=opts.jitter)
                results.append(r)
                print(f"round {rnd + 1} {render_one(r)}", flush=True)
        for target in opts.wedge:
            r = await session.fault(target, signal.SIGSTOP, settle_s=opts.settle, jitter_s=opts.jitter)
            results.append(r)
            print(f"wedge   {render_one(r)}", flush=True)
        others: list[FaultResult] = []  # windows of the other scenarios, for attributing losses
        if opts.disk:
            res["disk"] = await disk_scenarios(session, others)
            print(f"disk    {json.dumps(res['disk'])}", flush=True)
        res["world"] = await session.world_check()
        print(f"world   {json.dumps(res['world'])}", flush=True)
        if opts.crash_loop:
            res["crash_loop"] = await crash_loop(session, others)
            print(f"crash   {json.dumps(res['crash_loop'])}", flush=True)
        await asyncio.sleep(2.0)  # let sparse streams show their last gaps
        res["lost_outside_faults"] = session.attribute_losses([*results, *others])
        res["launcher_rc"] = await session.stop()
    finally:
        res["duration_s"] = round(time.monotonic() - t0, 1)
        res["faults"] = [r.as_dict() for r in results]
        res["summary"] = summarise(results)
        res["jitter_s"] = opts.jitter
        res["heartbeat_timeout_s"] = session.config.pipeline.supervisor.heartbeat_timeout_s
        res["stats_interval_s"] = session.config.bus.stats_interval_s
        res["wedged_lines"] = sum(
            "is wedged" in x for x in session.launcher_log.read_text(errors="replace").splitlines()
        )
        if not opts.keep:
            session.cleanup()
    res["checks"] = checks(res, opts)
    res["ok"] = all(c["ok"] for c in res["checks"] if c["hard"] or opts.strict)
    return res


def checks(res: dict[str, Any], opts: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str, hard: bool = True) -> None:
        out.append({"check": name, "ok": bool(ok), "detail": detail, "hard": hard})

    beat = res["heartbeat_timeout_s"] or 0
    for key, s in res["summary"].items():
        target, sig = key.split(":")
        rec = s["recovery_s"]
        if sig == "SIGKILL":
            check(
                f"{target} recovers < {TARGET_S} s",
                rec is not None and rec["max"] < TARGET_S,
                f"recovery max {rec and rec['max']} s, median {rec and rec['median']} s",
                hard=False,
            )
        else:
            bound = beat + 2 * res["stats_interval_s"] + 1.0
            gone = s["gone_s"]
            check(
                f"{target} wedge caught within heartbeat_timeout_s + 2 beats",
                gone is not None and gone["max"] <= bound,
                f"killed by the launcher after {gone and gone['max']} s (bound {bound} s), ready again after "
                f"{s['ready_s'] and s['ready_s']['max']} s",
            )
        # a wedged proxy still takes what publishers send (their connections stay up) until it is killed:
        # that loss is bounded by heartbeat_timeout_s, reported, and not counted as a failure
        inherent = target == "proxy" and sig == "SIGSTOP"
        check(
            f"{target} {sig}: no loss on reliable topics of processes that did not die",
            not s["lost"],
            f"lost {s['lost'] or 0}" + (" (sent into the wedged proxy before it was killed)" if inherent else ""),
            hard=not inherent,
        )
        if s["lost_in_flight"]:  # inside the process at the instant it died: pub/sub has no acknowledgements
            check(
                f"{target} {sig}: nothing in flight lost",
                False,
                f"{sum(s['lost_in_flight'].values())} message(s) published within 50 ms of the kill lost in "
                f"{s['faults_losing_in_flight']} of {s['faults']} faults: {s['lost_in_flight']}",
                hard=False,
            )
        expect = sorted(set(NODES) | {"proxy"}) if target == "launcher" else []
        others = [n for n in s["restarted"] if n not in expect and n != "recorder"]
        check(f"{target} {sig}: no other process restarted", not others, f"restarted {others or 'none'}")
        check(f"{target} {sig}: recovered every time", not s["timeouts"], f"{s['timeouts'] or 'yes'}")
        if target == "launcher":
            orphans = [n for notes in s["notes"] for n in notes.get("orphans", [])]
            check("launcher SIGKILL: no child outlives it", not orphans, f"orphans: {orphans or 'none'}")
    outside = res.get("lost_outside_faults")
    if outside is not None:
        check("no message lost outside the faults", not outside, f"{len(outside)} lost: {outside[:10]}")
    w = res.get("world")
    if w:
        check("world: no caption on the wrong segment", w["captions_on_wrong_segment"] == 0, json.dumps(w))
        check(
            "world: segment ids unique and increasing",
            w["segment_ids_reused"] == 0 and w["segment_ids_increasing"],
            f"reused {w['segment_ids_reused']}, increasing {w['segment_ids_increasing']}",
        )
        check(
            "world: every segment published while it listened is in its memory",
            w["segments_missing_from_world"] == 0,
            f"missing {w['segments_missing_from_world']} of {w['segments_published']}",
        )
    if opts.wedge:
        check(
            "wedges: one launcher error line per wedge",
            res["wedged_lines"] == len(opts.wedge),
            f"{res['wedged_lines']} 'is wedged' lines for {len(opts.wedge)} wedges",
        )
    c = res.get("crash_loop")
    if c:
        check(
            "crash loop given up after max_restarts with one error line",
            c["gave_up_lines"] == 1 and c["kills"] <= c["max_restarts"] + 1,
            json.dumps(c),
        )
        check(
            "crash loop: the rest keeps running",
            c["embeddings_after_give_up"] and not c["others_restarted"],
            f"embeddings after give-up {c['embeddings_after_give_up']}, restarted {c['others_restarted']}",
        )
        check("launcher exits 1 after a give-up", res.get("launcher_rc") == 1, f"rc {res.get('launcher_rc')}")
        check("crash loop: the rest lost nothing", not c["lost_by_the_rest"], f"lost {c['lost_by_the_rest'] or 0}")
    d = res.get("disk")
    if d and "skipped" not in d:
        for name, x in d.items():
            want = "disk full" if name == "full_disk" else "Read-only file system"
            check(f"recorder {name}: a clear error", x["rc"] not in (0, None) and want in x["error"], x["error"])
            check(
                f"recorder {name}: pipeline unaffected",
                not x["pipeline_lost"] and not x["restarted"],
                f"lost {x['pipeline_lost']}, restarted {x['restarted']}",
            )
            if name != "read_only":
                check(
                    f"recorder {name}: the file so far is readable by the official mcap reader",
                    x["official_reader_messages"] > 0,
                    f"{x['official_reader_messages']} messages; stopped: {x['official_reader_stopped']}",
                )
    return out


def fmt(x: dict | None) -> str:
    return "-" if not x else f"{x['median']:.2f}/{x['max']:.2f}"


def render_one(r: FaultResult) -> str:
    def f(v):
        return "-" if v is None else f"{v:.2f}"

    return (
        f"{r.signal:7s} {r.target:9s} gone {f(r.gone_s)} s  ready {f(r.ready_s)} s  output {f(r.output_s)} s  "
        f"missed {r.missed or '-'}  restarted {r.restarted or '-'}" + (f"  {r.notes}" if r.notes else "")
    )


def render(res: dict[str, Any]) -> str:
    lines = [
        f"fault campaign: {len(res['faults'])} faults in {res['duration_s']} s (pipeline start {res.get('start_s')} s), "
        f"heartbeat_timeout_s {res['heartbeat_timeout_s']}",
        "",
        "fault             n  recovery s   ready s      output s     lost  in flight  missed while down",
        "                     (med/max)    (med/max)    (med/max)    (reliable, other processes)",
    ]

    def counts(d: dict[str, int]) -> str:
        return str(sum(d.values())) if d else "0"

    for key, s in res["summary"].items():
        missed = ", ".join(f"{t} {n}" for t, n in s["missed"].items() if n) or "-"
        lines.append(
            f"{key:16s} {s['faults']:2d}  {fmt(s['recovery_s']):11s}  {fmt(s['ready_s']):11s}  {fmt(s['output_s']):11s}  "
            f"{counts(s['lost']):>4s}  {counts(s['lost_in_flight']):>9s}  {missed}"
        )
    others = "; ".join(f"{k}: {','.join(s['restarted'])}" for k, s in res["summary"].items() if s["restarted"])
    lines.append(f"other processes restarted: {others or 'none'}")
    lost = {k: (s["lost"], s["lost_in_flight"]) for k, s in res["summary"].items() if s["lost"] or s["lost_in_flight"]}
    for k, (a, b) in lost.items():
        lines.append(f"lost on {k}: " + (f"while down {a}" if a else "") + (f" in flight {b}" if b else ""))
    rec = [n for s in res["summary"].values() for n in s["notes"] if "recovered_messages" in n]
    if rec:
        lines.append(
            "recorder killed: recovered "
            + ", ".join(f"{n['recovered_messages']} msgs ({n['unflushed_ms']} ms unflushed)" for n in rec)
        )
    for name in ("world", "crash_loop", "disk"):
        if name in res:
            lines.append(f"{name}: {json.dumps(res[name])}")
    lines.append("")
    for c in res["checks"]:
        tag = "  ok" if c["ok"] else ("FAIL" if c["hard"] else "MISS")
        lines.append(f"[{tag}] {c['check']}: {c['detail']}")
    missed = [c["check"] for c in res["checks"] if not c["ok"] and not c["hard"]]
    lines.append("")
    lines.append(("PASS" if res["ok"] else "FAIL") + (f" (targets missed: {', '.join(missed)})" if missed else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.campaign", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="SIGKILLs per process (round-robin)")
    p.add_argument("--kill", default=",".join(KILL_ORDER), help="processes to SIGKILL, in order")
    p.add_argument("--wedge", default=",".join(WEDGE_ORDER), help="processes to SIGSTOP once each ('' for none)")
    p.add_argument("--no-disk", dest="disk", action="store_false", help="skip the recorder disk scenarios")
    p.add_argument("--no-crash-loop", dest="crash_loop", action="store_false", help="skip the crash loop")
    p.add_argument("--heartbeat-timeout", type=float, default=None, help="override supervisor.heartbeat_timeout_s")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after each recovery before the next fault")
    p.add_argument("--warm-up", type=float, default=120.0, help="seconds to wait for a first caption")
    p.add_argument("--jitter", type=float, default=1.0, help="random extra wait before each fault, up to S seconds")
    p.add_argument("--checkpoint", default=str(TRAINED))
    p.add_argument("--strict", action="store_true", help="a missed recovery target fails the run too")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--keep", action="store_true", help="keep the workdir (logs, recordings)")
    opts = p.parse_args(argv)
    opts.kill = [x for x in opts.kill.split(",") if x]
    opts.wedge = [x for x in opts.wedge.split(",") if x]
    res = asyncio.run(campaign(opts))
    print(render(res), flush=True)
    if opts.json is not None:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(res, indent=1, default=str))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
