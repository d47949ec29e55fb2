"""`perception` command line: a thin dispatcher over perception/commands/*.py and plugged-in commands.

Packages that sit above perception (skills/, benchmarks/) add their commands through the
`perception.commands` entry-point group (pyproject.toml), so perception never imports them: the
dependency arrow stays `skills -> perception -> bus`. An entry point names a module with `HELP`,
`add_arguments(parser)` and `run(args) -> int`, exactly like the built-in command modules.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import entry_points

from bus.config import NAME_ENV, EndpointError, check_pipeline_name
from bus.logs import configure_logging
from bus.security import SecurityConfigError

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("perception.commands.up", "launch and supervise the whole pipeline"),
    "bus": ("perception.commands.bus_proxy", "run the bus proxy alone"),
    "keys": ("perception.commands.keys", "write a CURVE key pair for tcp:// deployments"),
    "topics": ("perception.commands.introspect", "list topics seen on the bus"),
    "echo": ("perception.commands.introspect", "print messages on a topic"),
    "hz": ("perception.commands.introspect", "measure the rate of a topic"),
    "record": ("perception.commands.record", "record topics to an MCAP file"),
    "replay": ("perception.commands.replay", "replay an MCAP file onto the bus"),
    "info": ("perception.commands.info", "summarise an MCAP file"),
    "test": ("perception.commands.test", "run recorded sessions through a pipeline offline and diff what it perceives"),
    "ros2": (
        "perception.commands.ros2",
        "publish captions and events to a ROS 2 graph (DDS), beside a running pipeline",
    ),
    "ask": ("perception.commands.ask", "ask the running pipeline a question"),
    "now": ("perception.commands.world", "what each camera shows now (segment, caption, active watches)"),
    "history": ("perception.commands.world", "captions and events of the last --since seconds"),
    "search": ("perception.commands.world", "segments that match a text, best first"),
    "watch": ("perception.commands.world", "add a watch phrase at run time (prints its id)"),
    "unwatch": ("perception.commands.world", "remove a runtime watch by its id"),
    "watches": ("perception.commands.world", "list the watch phrases in force"),
    "memory": ("perception.memory.command", "search, inspect and import the robot memory (world.store)"),
    "mcp": ("perception.mcp.command", "serve an MCP server (tools for agent planners) over the running pipeline"),
    "foxglove": ("perception.commands.viewers", "serve the live bus to the Foxglove app (WebSocket, default :8765)"),
    "view": ("perception.commands.viewers", "show the live pipeline or a recording in Rerun (--save OUT.rrd, --web)"),
    "graph": ("perception.commands.graph", "print the node graph with message types"),
    "data": ("perception.commands.data", "write and check WebDataset tar shards of a manifest"),
    "train": ("perception.commands.train", "train a model preset"),
    "eval": ("perception.commands.evaluate", "run the evaluation suite"),
    "weights": ("perception.commands.weights", "import a published checkpoint (format open-vljepa) as ours"),
}
PLUGIN_GROUP = "perception.commands"


def commands() -> dict[str, tuple[str, str]]:
    """Built-in commands plus those other installed packages plug in (name -> (module, help))."""
    out = dict(COMMANDS)
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        if ep.name not in out:  # a plug-in never shadows a built-in command
            out[ep.name] = (ep.value, "")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in commands().items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            module = None
        help_text = help_text or getattr(module, "HELP", "")
        p = sub.add_parser(name, help=help_text, description=help_text)
        config_help = getattr(module, "CONFIG_HELP", "YAML config (default: configs/tiny-cpu.yaml)")
        p.add_argument("--config", default=None, help=config_help)
        p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
        p.add_argument(
            "--library-output",
            action="store_true",
            help=f"show third-party progress bars and FutureWarnings (hidden by default; or {LIBRARY_OUTPUT_ENV}=1)",
        )
        if module is None:
            p.set_defaults(_missing=module_name)
            continue
        add = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        add(p)
        if "--name" not in p._option_string_actions:  # `keys --name` is a key's name
            p.add_argument(
                "--name",
                dest="pipeline_name",
                default=None,
                help="which pipeline: a second concurrent one gets its own bus dir (vljepa-<uid>-NAME); "
                "clients pass the same --name (or set PERCEPTION_NAME)",
            )
        p.set_defaults(_run=getattr(module, f"run_{name}", None) or module.run)
    return parser


LIBRARY_OUTPUT_ENV = "PERCEPTION_LIBRARY_OUTPUT"
QUIET_LIBRARIES = {  # set in this process's environment, so every node it starts inherits them
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bars
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONWARNINGS": "ignore::FutureWarning",
}


def quiet_libraries() -> None:
    """Hide third-party progress bars and FutureWarnings (stderr is for our logs) unless asked to show them."""
    import warnings

    for key, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.library_output:
        os.environ[LIBRARY_OUTPUT_ENV] = "1"
        for key, value in QUIET_LIBRARIES.items():  # a quiet parent's settings, inherited: the flag wins
            if os.environ.get(key) == value:
                del os.environ[key]
    if os.environ.get(LIBRARY_OUTPUT_ENV) != "1":
        quiet_libraries()
    configure_logging(level=args.log_level)
    if getattr(args, "_missing", None):
        print(f"perception {args.command}: not available in this build ({args._missing})", file=sys.stderr)
        return 2
    name = getattr(args, "pipeline_name", None)
    if name is not None:
        try:
            os.environ[NAME_ENV] = check_pipeline_name(name)  # read by the default bus dir, here and in children
        except ValueError as exc:
            print(f"perception {args.command}: --name: {exc}", file=sys.stderr)
            return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (SecurityConfigError, EndpointError) as exc:  # a refused bind or key: say why, no traceback
        print(f"perception {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
