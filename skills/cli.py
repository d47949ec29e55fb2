"""`perception skill NAME [--duration S] [-n N] [--camera CAM] [skill options]`: run one skill.

NAME is a shipped skill (narrator, watcher, planner, timeline), `package.module:Class`, or
`path/to/file.py[:Class]`. `perception skill NAME --help` lists that skill's own options.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "run a skill"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="narrator | watcher | planner | timeline | module:Class | file.py[:Class]")
    p.add_argument("skill_args", nargs=argparse.REMAINDER, help="the skill's options (NAME --help lists them)")


def skill_parser(name: str, cls) -> argparse.ArgumentParser:
    doc = (cls.__doc__ or "").strip().splitlines()
    p = argparse.ArgumentParser(prog=f"perception skill {name}", description=doc[0] if doc else None)
    p.add_argument("--config", default=None, help="YAML config (default: configs/tiny-cpu.yaml)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("-n", "--count", type=int, default=None, help="stop after N handled messages")
    p.add_argument("--camera", default=None, help="only this camera (default: all)")
    p.add_argument("--rpc-timeout", type=float, default=2.0, help="seconds per world query attempt")
    cls.add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from perception.config import ConfigError, load_config
    from skills.registry import SkillNotFound, load_skill_class
    from skills.sdk import run_skill

    try:
        cls = load_skill_class(args.name)
    except SkillNotFound as exc:
        print(f"perception skill: {exc}", file=sys.stderr)
        return 2
    opts = skill_parser(args.name, cls).parse_args(args.skill_args)
    if opts.duration is not None and opts.duration <= 0 or opts.count is not None and opts.count <= 0:
        print("perception skill: --duration and -n must be > 0", file=sys.stderr)
        return 2
    try:
        config = load_config(opts.config or args.config)
        skill = cls.from_args(config, opts)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"perception skill {args.name}: {exc}", file=sys.stderr)
        return 2
    try:
        counters = run_skill(
            skill,
            duration=opts.duration,
            max_messages=opts.count,
            on_ready=lambda sk: print(f"skill {sk.name} ready topics={sk.topics}", flush=True),
        )
    except Exception as exc:  # BusNotReady and the like: say what failed
        print(f"perception skill {args.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"skill": skill.name, "counters": counters}), flush=True)
    return 0
