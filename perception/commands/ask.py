"""`perception ask "QUESTION" [--choices a,b,c] [--camera cam0]`: ask the running pipeline, print JSON.

The request goes to the world node (bus.rpc), which forwards it to the encoder: the predictor re-runs on
the camera's latest window with the question as query. With --choices the answer is the nearest
candidate (with every candidate's score); without, the Y-decoder's text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from perception.config import ConfigError, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="the question, e.g. 'what colour is the moving shape?'")
    p.add_argument("--choices", default=None, help="comma-separated candidate answers, e.g. red,green,blue")
    p.add_argument("--camera", default=None, help="camera name (default: the first one the encoder saw)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the answer")


def parse_choices(text: str | None) -> list[str] | None:
    if text is None:
        return None
    choices = [c.strip() for c in text.split(",") if c.strip()]
    if not choices:
        raise ValueError("--choices needs at least one non-empty candidate")
    return choices


async def ask(config, question: str, choices: list[str] | None, camera: str | None, timeout: float) -> dict:
    from perception.world_client import WorldClient

    async with WorldClient(config.bus, timeout=timeout, retries=0) as world:
        return await world.ask(question, choices, camera)


def run(args: argparse.Namespace) -> int:
    from bus.config import where_looked
    from perception.world_client import RpcError, WorldUnavailable

    try:
        config = load_config(args.config)
        choices = parse_choices(args.choices)
    except (ConfigError, ValueError) as exc:
        print(f"perception ask: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(ask(config, args.question, choices, args.camera, args.timeout))
    except WorldUnavailable:
        print(
            f"perception ask: no answer from the pipeline on {config.bus.endpoint('rpc')} "
            f"within {args.timeout}s (is `perception up` running with this config and --name?); "
            f"{where_looked(config.bus.endpoint('rpc'))}",
            file=sys.stderr,
        )
        return 1
    except RpcError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        return 1
    print(json.dumps(result))
    return 0
