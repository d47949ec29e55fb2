"""`perception foxglove` and `perception view [SESSION.mcap]`: the session in Foxglove and in Rerun.

    perception foxglove [--host H] [--port P] [--max-fps F] [--backlog N] [--max-clients N] [--duration S]
    perception view [SESSION.mcap] [--save OUT.rrd] [--web] [--labels a,b,c] [--checkpoint DIR] [--duration S]

Both print one line on stdout once they serve (`foxglove ws://127.0.0.1:8765`, `rerun ...`), then run until
Ctrl-C / SIGTERM / `--duration`; `view SESSION.mcap --save OUT.rrd` returns when the file is written. Logs
go to stderr. docs/viewers.md is the manual; the code is perception/viewers/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bus.mcapfile import RecordingError
from perception.viewers.defaults import (
    FOXGLOVE_BACKLOG as DEFAULT_BACKLOG,
)
from perception.viewers.defaults import (
    FOXGLOVE_HOST as DEFAULT_HOST,
)
from perception.viewers.defaults import (
    FOXGLOVE_MAX_CLIENTS as DEFAULT_MAX_CLIENTS,
)
from perception.viewers.defaults import (
    FOXGLOVE_PORT as DEFAULT_PORT,
)
from perception.viewers.defaults import (
    HISTORY as DEFAULT_HISTORY,
)
from perception.viewers.defaults import (
    MAX_FPS,
)
from perception.viewers.defaults import (
    RERUN_GRPC_PORT as GRPC_PORT,
)
from perception.viewers.defaults import (
    RERUN_WEB_PORT as WEB_PORT,
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-fps",
        type=float,
        default=None,
        help=f"frames per second per camera sent to the viewer (default {MAX_FPS:g}; 0: every frame)",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (live)")


def add_foxglove_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to serve on (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"WebSocket port (default {DEFAULT_PORT}; 0: a free one)"
    )
    p.add_argument(
        "--backlog",
        type=int,
        default=DEFAULT_BACKLOG,
        help=f"messages queued per client before its oldest are dropped (default {DEFAULT_BACKLOG})",
    )
    p.add_argument(
        "--max-clients",
        type=int,
        default=DEFAULT_MAX_CLIENTS,
        help=f"WebSocket clients served at once; one more is refused with the reason (default {DEFAULT_MAX_CLIENTS})",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="serve on a non-loopback --host (the Foxglove protocol has no authentication)",
    )
    _common(p)


def run_foxglove(args: argparse.Namespace) -> int:
    from bus.component import run_component
    from bus.pubsub import BusNotReady
    from perception.config import ConfigError, load_config
    from perception.viewers.foxglove_bridge import FoxgloveBridge

    try:
        config = load_config(args.config)
        if not 0 <= args.port <= 65535 or args.backlog < 1 or not 1 <= args.max_clients <= 10_000:
            raise ValueError("--port must be in 0..65535, --backlog at least 1 and --max-clients in 1..10000")
    except (ConfigError, ValueError) as exc:
        print(f"perception foxglove: {exc}", file=sys.stderr)
        return 2
    bridge = FoxgloveBridge(  # SecurityConfigError for a remote host: perception/cli.py says why, exit 2
        config,
        host=args.host,
        port=args.port,
        max_fps=MAX_FPS if args.max_fps is None else args.max_fps,
        backlog=args.backlog,
        allow_remote=args.allow_remote,
        max_clients=args.max_clients,
    )

    def ready(_component) -> None:
        print(f"foxglove {bridge.url}", flush=True)

    try:
        counters = asyncio.run(run_component(bridge, duration=args.duration, on_ready=ready))
    except BusNotReady as exc:
        print(f"perception foxglove: {exc} (is `perception up` running with this config?)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"perception foxglove: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the SDK's "address in use" and friends
        print(f"perception foxglove: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in counters.items() if "." not in k}), flush=True)
    return 0


def add_view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", nargs="?", default=None, help="an MCAP recording (default: the live pipeline)")
    p.add_argument("--save", default=None, metavar="OUT.rrd", help="write the Rerun recording to a file")
    p.add_argument("--web", action="store_true", help="serve Rerun's web viewer on 127.0.0.1")
    p.add_argument("--web-port", type=int, default=WEB_PORT, help=f"web viewer port (default {WEB_PORT})")
    p.add_argument(
        "--grpc-port", type=int, default=GRPC_PORT, help=f"port of the viewer's gRPC server (default {GRPC_PORT})"
    )
    p.add_argument(
        "--labels",
        default=None,
        help="comma-separated texts for the similarity heat-map "
        "(default: ShapesWorld's colours and actions: 'a red shape', ..., 'a shape grows', ...)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model whose text encoder embeds the labels, for a recording (default: the recorded session's)",
    )
    p.add_argument(
        "--history", type=int, default=DEFAULT_HISTORY, help=f"windows in the heat-map (default {DEFAULT_HISTORY})"
    )
    _common(p)


def run_view(args: argparse.Namespace) -> int:
    from perception.commands.outputs import output_error
    from perception.config import ConfigError, load_config

    if (rc := output_error("view", args.save, [args.session, args.config], "--save")) is not None:
        return rc
    from perception.viewers.texts import parse_labels

    try:
        config = load_config(args.config)
        labels = parse_labels(args.labels)
        if args.history < 1:
            raise ValueError("--history must be at least 1")
        if args.session is not None and not Path(args.session).is_file():
            raise RecordingError(f"recording not found: {args.session}")
    except (ConfigError, ValueError, RecordingError) as exc:
        print(f"perception view: {exc}", file=sys.stderr)
        return 2
    from perception.viewers.rerun_view import ViewerUnavailableError, WebViewer, open_stream

    max_fps = MAX_FPS if args.max_fps is None else args.max_fps
    web = rec = None
    try:
        if args.web:
            web = WebViewer(web_port=args.web_port, grpc_port=args.grpc_port).start()
        rec = open_stream(save=Path(args.save) if args.save else None, web=web)
        if web is not None:
            print(f"rerun {web.url}", flush=True)
        if args.session is not None:
            return _view_recording(args, config, rec, labels, max_fps, web)
        return _view_live(args, config, rec, labels, max_fps)
    except ViewerUnavailableError as exc:
        print(f"perception view: {exc}", file=sys.stderr)
        return 1
    finally:
        if web is not None:
            if rec is not None:
                rec.disconnect()  # before the server it streams to goes
            web.close()


def _view_recording(args, config, rec, labels, max_fps, web) -> int:
    from bus.runtime import run_until_stopped
    from perception.viewers.rerun_view import view_recording

    try:
        counters = view_recording(
            args.session,
            rec,
            config=config,
            labels=labels,
            checkpoint=args.checkpoint,
            max_fps=max_fps,
            history=args.history,
        )
    except (RecordingError, FileNotFoundError) as exc:  # a damaged recording; a --checkpoint that is not there
        print(f"perception view: {exc}", file=sys.stderr)
        return 2
    rec.flush()
    if args.save:
        rec.disconnect()  # finishes the file (its footer) before we say it is there
    summary = {k: v for k, v in counters.items() if "." not in k}
    print(json.dumps({"session": args.session, "saved": args.save, **summary}), flush=True)
    if web is not None:  # keep serving what was logged until Ctrl-C
        print("serving the recording; Ctrl-C to stop", file=sys.stderr, flush=True)
        asyncio.run(run_until_stopped(lambda: asyncio.Event().wait(), args.duration))
    return 0


def _view_live(args, config, rec, labels, max_fps) -> int:
    from bus.component import run_component
    from bus.pubsub import BusNotReady
    from perception.viewers.rerun_view import RerunViewer

    viewer = RerunViewer(config, rec, labels=labels, max_fps=max_fps, history=args.history)

    def ready(_component) -> None:
        print(f"rerun live{' -> ' + args.save if args.save else ''}", flush=True)

    try:
        counters = asyncio.run(run_component(viewer, duration=args.duration, on_ready=ready))
    except BusNotReady as exc:
        print(f"perception view: {exc} (is `perception up` running with this config?)", file=sys.stderr)
        return 1
    rec.flush()
    if args.save:
        rec.disconnect()
    print(json.dumps({k: v for k, v in counters.items() if "." not in k}), flush=True)
    return 0
