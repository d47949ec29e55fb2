"""`perception eval [--checkpoint DIR] [--split heldout|val] [--seeds 0,1,2] [--json OUT] [--quick]`, and
`perception eval compare [--budgets 4096,16384,65536] [--clips 600] [--out DIR]`: VL-JEPA against the
token-generative VLM on the checkpoint's frozen X-encoder (perception/eval/compare.py)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from perception.config import REPO_ROOT

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny"
DEFAULT_PLOT = REPO_ROOT / "docs" / "selective_decoding.png"
COMPARE_PLOT = REPO_ROOT / "docs" / "vlm_vs_jepa.png"
DEFAULT_CACHE = REPO_ROOT / "runs" / "eval-cache"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "what",
        nargs="?",
        default="suite",
        choices=["suite", "compare"],
        help="suite: the evaluation protocol on one checkpoint; compare: VL-JEPA vs the token VLM at budgets",
    )
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model directory (VLJepa.save)")
    p.add_argument(
        "--split",
        default="heldout",
        choices=["heldout", "val", "train"],
        help="heldout: the test split, only for reporting; val: every choice of recipe and checkpoint",
    )
    p.add_argument("--seeds", default="0,1,2", help="stream seeds, comma-separated; the clips use the first")
    p.add_argument("--clips", type=int, default=None, help="clips for the clip tasks (default 3000)")
    p.add_argument("--streams-per-seed", type=int, default=None, help="streams per seed (default 16)")
    p.add_argument(
        "--cache",
        default=str(DEFAULT_CACHE),
        help="stream embeddings cached here per model fingerprint, so a re-run costs decodes only ('none': off)",
    )
    p.add_argument("--json", dest="json_out", default=None, help="write the full result JSON here")
    p.add_argument("--quick", action="store_true", help="small sample (smoke run, not a reported figure)")
    p.add_argument(
        "--plot",
        default=None,
        help=f"selective-decoding PNG (default: {DEFAULT_PLOT.relative_to(REPO_ROOT)}; 'none' to skip)",
    )
    p.add_argument("--budgets", default=None, help="compare: training rows per budget, comma-separated")
    p.add_argument("--out", default=None, help="compare: save each trained learner under OUT/<budget>/<learner>")
    p.add_argument("--train-config", default=None, help="compare: the learners' YAML (default train-tiny-vlm.yaml)")
    p.add_argument("--pool", type=int, default=None, help="compare: training clips (default: the train config's)")
    p.add_argument(
        "--sweep-lr", default=None, help="compare: lr scales to try per learner, e.g. 0.5,1,2 (use --split val)"
    )
    p.add_argument("--lr-scale", default=None, help="compare: chosen lr scale per learner, e.g. jepa=1,vlm=2")
    p.add_argument("--device", default=None, help="cpu / cuda (default: the checkpoint's config)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (1 is fastest on an oversubscribed CPU; default: torch's)",
    )


def run(args: argparse.Namespace) -> int:
    from perception.eval.suite import SuiteConfig, evaluate, summary_table
    from perception.model import CheckpointError, VLJepa

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from perception.commands.outputs import output_error

    ckpt = Path(args.checkpoint)
    inputs = [ckpt / "config.json", ckpt / "model.safetensors", args.train_config, args.config]
    if (rc := output_error("eval", args.json_out, inputs, "--json")) is not None:
        return rc
    if (rc := output_error("eval", args.out, [ckpt, args.train_config], "--out", directory=True)) is not None:
        return rc
    if args.what == "compare":
        return run_compare(args)
    try:
        model = VLJepa.load(args.checkpoint, device=args.device)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"perception eval: cannot load checkpoint: {exc}", file=sys.stderr)
        return 2
    plot = None if args.plot == "none" else (args.plot or DEFAULT_PLOT)
    try:
        seeds = tuple(int(x) for x in args.seeds.split(","))
    except ValueError:
        print(f"perception eval: --seeds must be integers separated by commas, got {args.seeds!r}", file=sys.stderr)
        return 2
    cfg = SuiteConfig.quick() if args.quick else SuiteConfig()
    sizes = {"clips": args.clips, "streams_per_seed": args.streams_per_seed}
    cfg = replace(cfg, seeds=seeds, **{k: v for k, v in sizes.items() if v is not None})
    cfg = replace(cfg, cache_dir=None if args.cache == "none" else args.cache)
    result = evaluate(model, split=args.split, cfg=cfg, plot=plot)
    result["checkpoint"] = str(args.checkpoint)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    print(summary_table(result))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from perception.config import ConfigError
    from perception.eval import compare
    from perception.model import CheckpointError

    cfg = compare.CompareConfig.quick() if args.quick else compare.CompareConfig()
    try:
        cfg = compare.with_sizes(cfg, args.budgets, args.clips, args.split, args.sweep_lr, args.lr_scale)
        cfg = compare.replace(cfg, train_config=args.train_config, pool=args.pool or cfg.pool)
        result = compare.compare(args.checkpoint, cfg, out_dir=args.out)
    except (CheckpointError, FileNotFoundError, ConfigError, ValueError) as exc:
        print(f"perception eval compare: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        compare.write_json(result, args.json_out)
    plot = None if args.plot == "none" or cfg.sweep else (args.plot or (None if args.quick else COMPARE_PLOT))
    if plot:  # an lr sweep has no one curve per learner: its table is the result
        compare.plot(result, plot)
    print(compare.summary_table(result))
    return 0
