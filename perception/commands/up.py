"""`perception up`: launch and supervise the service. For now (until the pipeline lands): the bus proxy,
a synthetic publisher and a subscriber that prints what it receives, each its own process.

Stops on Ctrl-C, SIGTERM or --duration; every child is terminated (then killed) before it returns.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from bus.logs import get_logger
from perception.config import load_config

log = get_logger("perception.up")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_path", nargs="?", default=None, help="YAML config (same as --config)")
    p.add_argument("--source", default="synthetic", help="only 'synthetic' until the pipeline exists")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print received messages as JSON lines")


def run(args: argparse.Namespace) -> int:
    bus = load_config(args.config_path or args.config).bus
    if args.source != "synthetic":
        print(f"perception up: --source {args.source!r} needs the pipeline; only 'synthetic' for now", file=sys.stderr)
        return 2
    cfg = bus.model_dump_json()
    demo = [sys.executable, "-m", "bus.demo"]
    listener_args = ["listener", "--bus-json", cfg] + (["--json"] if args.json else [])
    children: list[subprocess.Popen] = []
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for role_args in (["proxy", "--bus-json", cfg], listener_args, ["talker", "--bus-json", cfg]):
            children.append(subprocess.Popen(demo + role_args))
        log.info("up", pids=[c.pid for c in children], pub=bus.endpoint("pub"), sub=bus.endpoint("sub"))
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop and (deadline is None or time.monotonic() < deadline):
            dead = [c for c in children if c.poll() is not None]
            if dead:
                log.error("a child exited, stopping", pid=dead[0].pid, returncode=dead[0].returncode)
                return 1
            time.sleep(0.1)  # supervision tick
        return 0
    finally:
        for c in reversed(children):  # talker, listener, then the proxy
            if c.poll() is None:
                c.terminate()
        for c in reversed(children):
            try:
                c.wait(timeout=5)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        for s, h in old.items():
            signal.signal(s, h)
