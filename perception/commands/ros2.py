"""`perception ros2 [CONFIG] [--namespace NS] [--duration S]`: the ROS 2 output node alone, beside a
running pipeline (on its bus): captions, events and watch crossings out to the ROS 2 graph of
ROS_DOMAIN_ID (docs/ros2.md). `perception up --ros2` runs the same node inside the pipeline instead."""

from __future__ import annotations

import argparse
import asyncio
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_path", nargs="?", default=None, help="YAML config (same as --config)")
    p.add_argument("--namespace", default=None, help="ROS 2 namespace of the topics (default /perception)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bus.component import run_component
    from perception.config import AppConfig, ConfigError, load_config
    from perception.nodes.ros2_out import Ros2OutNode

    try:
        config = load_config(args.config_path or args.config)
        data = config.model_dump()
        ros2 = data["pipeline"].get("ros2") or {}
        if args.namespace is not None:
            ros2["namespace"] = args.namespace
        data["pipeline"]["ros2"] = ros2
        config = AppConfig.model_validate(data)
    except (ConfigError, ValidationError) as exc:
        print(f"perception ros2: {exc}", file=sys.stderr)
        return 2
    counters = asyncio.run(run_component(Ros2OutNode(config), duration=args.duration))
    sent = {k: int(v) for k, v in counters.items() if k.startswith("sent.")}
    print(f"perception ros2: stopped; {sent}", file=sys.stderr)
    return 0
