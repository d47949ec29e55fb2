"""`perception bus`: run the bus proxy alone (XSUB on bus.pub, XPUB on bus.sub) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio

from bus.proxy import Proxy
from bus.runtime import run_until_stopped
from perception.config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config).bus
    asyncio.run(run_until_stopped(Proxy(config).run, args.duration))
    return 0
