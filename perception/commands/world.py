"""`perception now | history | search TEXT | watch PHRASE | unwatch ID | watches`: the world node's RPC
methods on the command line (through perception/world_client.py's WorldClient, as MCP tools and skills do).

Each prints the world's answer as one JSON object on stdout and exits 0; no pipeline answering is one line
on stderr saying where it looked, exit 1; an error the world returns (an unknown camera, a bad argument)
is one line on stderr, exit 2 for a bad request and 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from perception.config import ConfigError, load_config

HELP = "the running pipeline's world: now, history, search, watch, unwatch, watches"
MODEL_METHODS = {"search"}  # they run the model: a longer default timeout


def _common(p: argparse.ArgumentParser, camera: bool = True) -> None:
    if camera:
        p.add_argument("--camera", default=None, help="camera name (default: every camera, or the first one)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the answer (default 3; search 15)")


def add_now_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)


def add_history_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--since", type=float, default=60.0, help="from S seconds ago (default 60)")
    p.add_argument("--kinds", default=None, help="comma-separated: caption,enter,leave,... (default: all)")
    p.add_argument("--limit", type=int, default=None, help="at most N items (newest)")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="what to look for, e.g. 'a red circle'")
    _common(p)
    p.add_argument("-k", type=int, default=None, help="how many segments (default: the world's)")


def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("phrase", help="the phrase to watch for, e.g. 'a red circle appears'")
    _common(p)
    p.add_argument("--enter", type=float, default=None, help="score at which it becomes active")
    p.add_argument("--leave", type=float, default=None, help="score below which it stops being active")


def add_unwatch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="the watch id `watch` printed (w-...)")
    _common(p, camera=False)


def add_watches_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)


def params_of(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The RPC params for `method` from its command line (None values are left out)."""
    p: dict[str, Any] = {"camera": getattr(args, "camera", None)}
    if method == "history":
        p |= {"since_ns": time.time_ns() - int(args.since * 1e9), "limit": args.limit}
        if args.kinds:
            p["kinds"] = [k.strip() for k in args.kinds.split(",") if k.strip()]
    elif method == "search":
        p |= {"text": args.text, "k": args.k}
    elif method == "watch":
        p |= {"phrase": args.phrase, "enter": args.enter, "leave": args.leave}
    elif method == "unwatch":
        p = {"id": args.id}
    return {k: v for k, v in p.items() if v is not None}


async def call(config, method: str, params: dict[str, Any], timeout: float) -> Any:
    from perception.world_client import WorldClient

    async with WorldClient(config.bus, timeout=timeout, retries=0) as world:
        return await world.call(method, params)


def _run(method: str, args: argparse.Namespace) -> int:
    from bus.config import where_looked
    from perception.world_client import RpcError, WorldUnavailable

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"perception {method}: {exc}", file=sys.stderr)
        return 2
    timeout = args.timeout or (15.0 if method in MODEL_METHODS else 3.0)
    try:
        result = asyncio.run(call(config, method, params_of(method, args), timeout))
    except WorldUnavailable:
        endpoint = config.bus.endpoint("rpc")
        print(
            f"perception {method}: no perception pipeline answers on {endpoint} within {timeout:g}s "
            f"(start one with `perception up`, same --config and --name); {where_looked(endpoint)}",
            file=sys.stderr,
        )
        return 1
    except RpcError as exc:
        print(f"perception {method}: {exc.code}: {exc.message}", file=sys.stderr)
        return 2 if exc.code == "bad_request" else 1
    print(json.dumps(result, default=str))
    return 0


def run_now(args: argparse.Namespace) -> int:
    return _run("now", args)


def run_history(args: argparse.Namespace) -> int:
    return _run("history", args)


def run_search(args: argparse.Namespace) -> int:
    return _run("search", args)


def run_watch(args: argparse.Namespace) -> int:
    return _run("watch", args)


def run_unwatch(args: argparse.Namespace) -> int:
    return _run("unwatch", args)


def run_watches(args: argparse.Namespace) -> int:
    return _run("watches", args)


def add_arguments(p: argparse.ArgumentParser) -> None:  # the module protocol; each command has its own
    _common(p)


def run(args: argparse.Namespace) -> int:
    return _run(args.command, args)
