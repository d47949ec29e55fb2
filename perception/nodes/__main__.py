"""Run one node (or the bus proxy) in this process: what the launcher starts for each child.

    python -m perception.nodes NAME [--config-json FILE | --config YAML] [--spare]

NAME is one of perception.nodes.NODE_NAMES or `proxy`. `--config-json` holds an AppConfig already
validated and resolved by the launcher; `--config` loads and validates a YAML file (manual runs).

`--spare` (the launcher's `supervisor.spares`): build the node, run its `preload()` (imports, model load:
what makes a cold start slow), then wait touching no socket, named `spare:NAME` in ps, until a line on
stdin says go; then run as the node. EOF on stdin (the launcher gone or done with it) exits.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import os
import sys
import time
from pathlib import Path

import zmq.asyncio

from bus.logs import configure_logging, get_logger
from perception.config import AppConfig, ConfigError, load_config
from perception.nodes import NODE_NAMES
from perception.nodes.runtime import die_with_parent, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perception.nodes", description=__doc__)
    parser.add_argument("name", help=f"one of {[*NODE_NAMES, 'proxy']}, or encoder.K: worker K of several")
    parser.add_argument("--config-json", type=Path, default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--spare", action="store_true", help="preload, then wait for a line on stdin to start")
    args = parser.parse_args(argv)
    base, _, worker = args.name.partition(".")
    if base not in [*NODE_NAMES, "proxy"] or (worker and (base != "encoder" or not worker.isdigit())):
        parser.error(f"unknown node {args.name!r}: one of {[*NODE_NAMES, 'proxy']} or encoder.K")
    configure_logging(level=args.log_level)
    log = get_logger("node.main", node=args.name)
    die_with_parent()
    try:
        if args.config_json is not None:
            config = AppConfig.model_validate_json(args.config_json.read_text())
        else:
            config = load_config(args.config)
    except (ConfigError, ValueError, OSError) as exc:
        log.error("bad config", error=str(exc))
        return 2
    if args.name == "proxy":
        from bus.proxy import Proxy
        from perception.nodes.runtime import Node

        class ProxyNode(Node):  # the proxy under the same signal handling as every node
            name = "proxy"

            async def run(self, **_: object) -> None:
                await Proxy(self.config.bus).run()

        node = ProxyNode(config)
    else:
        module = importlib.import_module(NODE_NAMES[base])
        try:
            node = module.NODE(config, int(worker)) if worker else module.NODE(config)
        except ValueError as exc:  # a worker index the config does not have
            log.error("bad node", error=str(exc))
            return 2
    if args.spare and not wait_as_spare(node, args.name, log):
        return 0
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(serve(node))
    except KeyboardInterrupt:
        code = 0
    # Every socket and file was closed by Node.run; let ZeroMQ send what is queued (up to the linger),
    # then exit now instead of letting the interpreter join a worker thread that may be seconds into a
    # forward pass (asyncio.run would wait for it).
    zmq.asyncio.Context.instance().destroy(linger=1000)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def set_process_name(name: str) -> None:
    """/proc/self/comm (what ps and psutil's name() show), at most 15 bytes; best effort."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15])  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def wait_as_spare(node: object, name: str, log) -> bool:
    """Preload, then block until the launcher says go (True) or closes stdin (False)."""
    set_process_name(f"spare:{name}")
    t0 = time.monotonic()
    preload = getattr(node, "preload", None)
    if preload is not None:
        preload()
    log.info("spare waiting", preload_s=round(time.monotonic() - t0, 3))
    go = sys.stdin.buffer.readline()
    if not go:
        return False
    set_process_name(name)
    log.info("spare taking over")
    return True


if __name__ == "__main__":
    sys.exit(main())
