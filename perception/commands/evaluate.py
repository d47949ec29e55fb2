"""`perception eval [--checkpoint DIR] [--split heldout] [--seed N] [--json OUT] [--quick]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception.config import REPO_ROOT

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny"
DEFAULT_PLOT = REPO_ROOT / "docs" / "selective_decoding.png"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model directory (VLJepa.save)")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"])
    p.add_argument("--seed", type=int, default=0, help="draws another sample of the same split")
    p.add_argument("--json", dest="json_out", default=None, help="write the full result JSON here")
    p.add_argument("--quick", action="store_true", help="small sample (smoke run, not a reported figure)")
    p.add_argument(
        "--plot",
        default=None,
        help=f"selective-decoding PNG (default: {DEFAULT_PLOT.relative_to(REPO_ROOT)}; 'none' to skip)",
    )
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
    try:
        model = VLJepa.load(args.checkpoint, device=args.device)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"perception eval: cannot load checkpoint: {exc}", file=sys.stderr)
        return 2
    plot = None if args.plot == "none" else (args.plot or DEFAULT_PLOT)
    cfg = SuiteConfig.quick() if args.quick else SuiteConfig()
    result = evaluate(model, split=args.split, seed=args.seed, cfg=cfg, plot=plot)
    result["checkpoint"] = str(args.checkpoint)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    print(summary_table(result))
    return 0
