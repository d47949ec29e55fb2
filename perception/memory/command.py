"""`perception memory search|last|at|spans|show|stats|import`: the robot memory from the command line.

    perception memory search "a red cup" --near 1.5,2,3,map --since -3600 --robot r1
    perception memory last "a red cup"                 # where and when it was last seen
    perception memory at --time -600                   # what was perceived ten minutes ago
    perception memory spans --watch "door open"        # how long it stayed open
    perception memory show 1234                        # one answer's evidence
    perception memory stats --store postgresql://robot@db/memory
    perception memory import world.jsonl --robot r1    # a world.persist JSON-lines file into the store

Without `--store`, the store of the config (`pipeline.world.store`), so what a finished run perceived can
still be searched. The same queries as the world node's RPC and the MCP tools (perception/memory/queries.py);
texts are embedded by the configured model, loaded here. Times: seconds, relative to now below 1e9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HELP = "search, inspect and import the robot memory (world.store) without a running pipeline"
IMPORT_BATCH = 500
EPOCH_S = 1e9


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["search", "last", "at", "spans", "show", "stats", "import"])
    p.add_argument("arg", nargs="?", default=None, help="search/last: the text; show: the id; import: the file")
    p.add_argument(
        "--store", default=None, metavar="URL", help="SQLite path or postgresql://... (default: the config's)"
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--since", type=float, default=None, help="seconds (relative to now if < 1e9)")
    p.add_argument("--until", type=float, default=None, help="seconds (relative to now if < 1e9)")
    p.add_argument("--time", type=float, default=None, help="at: a moment, seconds (relative to now if < 1e9)")
    p.add_argument("--near", default=None, metavar="X,Y,R[,FRAME]", help="within R metres of (X, Y)")
    p.add_argument("--robot", default=None)
    p.add_argument("--camera", default=None)
    p.add_argument("--min-score", type=float, default=None)
    p.add_argument("--watch", default=None, help="spans: one watch phrase")


class UsageError(ValueError):
    pass


def _ns(t: float | None, now: int) -> int | None:
    if t is None:
        return None
    return int(t * 1e9) if t >= EPOCH_S else now + int(t * 1e9)


def _near(text: str) -> dict[str, Any]:
    parts = text.split(",")
    if len(parts) not in (3, 4):
        raise UsageError(f"--near {text!r}: expected X,Y,R or X,Y,R,FRAME")
    try:
        x, y, r = (float(v) for v in parts[:3])
    except ValueError:
        raise UsageError(f"--near {text!r}: X, Y and R must be numbers") from None
    out: dict[str, Any] = {"x": x, "y": y, "r": r}
    if len(parts) == 4 and parts[3]:
        out["frame_id"] = parts[3]
    return out


def params_of(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(query method, its params) for a query action."""
    now = time.time_ns()
    p: dict[str, Any] = {}
    if args.action in ("search", "last", "at", "spans"):
        for key, val in (("since_ns", _ns(args.since, now)), ("until_ns", _ns(args.until, now))):
            if val is not None:
                p[key] = val
        for key in ("robot", "camera"):
            if getattr(args, key) is not None:
                p[key] = getattr(args, key)
        p["limit"] = args.limit
    if args.action in ("search", "last", "at"):
        if args.near is not None:
            p["near"] = _near(args.near)
        if args.min_score is not None:
            p["min_score"] = args.min_score
        if args.arg is not None:
            p["text"] = args.arg
    if args.action == "search":
        return "recall", p
    if args.action == "last":
        if args.arg is None:
            raise UsageError("last needs the text to look for")
        return "last_seen", p
    if args.action == "at":
        if args.time is not None:
            p["t_ns"] = _ns(args.time, now)
        return "at", p
    if args.action == "spans":
        if args.watch is not None:
            p["watch"] = args.watch
        return "spans", p
    if args.action == "show":
        try:
            return "segment", {"id": int(args.arg)}
        except (TypeError, ValueError):
            raise UsageError("show needs a segment id (an answer's `id`)") from None
    return "memory", {}


def _iso(t_ns: int | None) -> str:
    if t_ns is None:
        return "-"
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _where(p: dict[str, Any] | None) -> str:
    return "no pose" if not p else f"{p['frame_id']}({p['x']:.2f},{p['y']:.2f})"


def format_hit(h: dict[str, Any]) -> str:
    score = f" score={h['score']:.3f}" if h.get("score") is not None else ""
    dist = f" {h['distance_m']:.1f}m" if h.get("distance_m") is not None else ""
    labels = ",".join(x["label"] for x in h.get("labels", [])[:3])
    text = json.dumps(h["caption"]) if h.get("caption") else f"[{labels}]"
    return (
        f"#{h['id']} {h['robot']}/{h['camera']} seg {h['segment_id']} {_iso(h['start_ns'])}"
        f"+{(h['end_ns'] - h['start_ns']) / 1e9:.1f}s at {_where(h.get('pose_end') or h.get('pose_start'))}"
        f"{dist}{score} {text}"
    )


def print_answer(method: str, res: dict[str, Any]) -> None:
    if method in ("recall", "last_seen", "at"):
        for h in res["results"]:
            print(format_hit(h))
        if not res["results"]:
            print("nothing matched")
        for c in res.get("no_pose", []):
            print(f"note: {c['robot']}/{c['camera']} had no pose: a place query cannot see its segments")
    elif method == "spans":
        for s in res["spans"]:
            dur = "still active" if s["duration_s"] is None else f"{s['duration_s']:.1f}s"
            print(
                f"{s['robot']}/{s['camera']} {s['watch']!r} from {_iso(s['start_ns'])} for {dur} at {_where(s['pose'])}"
            )
        if not res["spans"]:
            print("no spans")
    elif method == "segment":
        print(format_hit(res))
    else:
        print(f"{res['engine']} {res['url']} D={res['dim']} bytes={res['bytes']}")
        print("rows: " + ", ".join(f"{k}={v}" for k, v in res["rows"].items()))
        print(f"from {_iso(res['first_ns'])} to {_iso(res['last_ns'])}")
        for c in res["cameras"]:
            print(f"  {c['robot']}/{c['camera']}: {c['segments']} segments")


def import_file(store: Any, path: Path, robot: str) -> tuple[int, int]:
    """A world.persist JSON-lines file into `store` as `robot`'s rows (no poses: the file has none).
    Returns (rows written, lines dropped); the loader's checks are the world node's own."""
    from perception.memory.node import batch_of
    from perception.memory.records import Batch
    from perception.nodes.world_store import read_lines

    written, dropped = 0, 0
    pending = Batch()
    for line in read_lines(path, store.dim):
        if line.record is None:
            dropped += 1
            continue
        pending.extend(batch_of(line.record, line.embedding, robot, lambda t: None))
        if len(pending) >= IMPORT_BATCH:
            store.write(pending)
            written, pending = written + len(pending), Batch()
    if len(pending):
        store.write(pending)
        written += len(pending)
    return written, dropped


def run(args: argparse.Namespace) -> int:
    from perception.config import ConfigError, load_config
    from perception.memory.open import open_store
    from perception.memory.queries import QueryError
    from perception.memory.store import StoreError

    def fail(msg: str) -> int:
        print(f"perception memory: {msg}", file=sys.stderr)
        return 2

    try:
        config = load_config(args.config)
        method, params = params_of(args) if args.action != "import" else ("import", {})
    except (ConfigError, UsageError) as exc:
        return fail(str(exc))
    url = args.store or config.pipeline.world.store
    if url is None:
        return fail("no store: pass --store URL or set pipeline.world.store in the config")
    try:
        if args.action == "import":
            from perception.memory.node import robot_name
            from perception.nodes.models import embed_dim

            if args.arg is None or not Path(args.arg).is_file():
                return fail(f"import needs an existing JSON-lines file, got {args.arg!r}")
            store = open_store(url, embed_dim(config.model), password_file=config.pipeline.world.memory.password_file)
            try:
                written, dropped = import_file(
                    store, Path(args.arg), robot_name(args.robot or config.pipeline.world.robot)
                )
            finally:
                store.close()
            print(
                json.dumps({"written": written, "dropped_lines": dropped})
                if args.json
                else f"imported {written} rows, dropped {dropped} bad lines"
            )
            return 0
        mem = config.pipeline.world.memory
        store = open_store(url, None, create=False, password_file=mem.password_file, ef_search=mem.hnsw_ef_search)
    except StoreError as exc:
        return fail(str(exc))
    try:
        from perception.memory.embed import LocalEmbedder
        from perception.memory.queries import MemoryQueries

        queries = MemoryQueries(lambda: store, LocalEmbedder(config.model, store.dim))
        try:
            res = asyncio.run(queries.handlers()[method](params))
        except QueryError as exc:
            return fail(f"{exc.message} ({exc.code})")
    finally:
        store.close()
    if args.json:
        print(json.dumps(res, default=str))
    else:
        print_answer(method, res)
    return 0
