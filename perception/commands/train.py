"""`perception train [--preset tiny] [--config configs/train-tiny.yaml] [--out DIR] [--resume]`.

A decoder from text alone (a checkpoint without one, e.g. an imported open-vljepa):
`perception train --stage decoder --checkpoint CKPT --texts FILE --out DIR` (configs/train-text-decoder.yaml).

Multi-process: `torchrun --nproc-per-node N -m perception.cli train ...` (gloo on CPU, nccl on GPU).
On video shards: `torchrun --nnodes N --nproc-per-node G -m perception.cli train --preset vjepa2-vitl --data SHARDS`.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from perception.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", help="training preset (its YAML in configs/) when --config is not given")
    p.add_argument("--out", default="runs/tiny", help="output directory (final model + last/ resumable state)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's newest checkpoint at its saved step")
    p.add_argument("--resume-from", default=None, metavar="DIR", help="sharded recipe: continue from this checkpoint")
    p.add_argument("--data", default=None, metavar="SHARDS", help="sharded recipe: the shard directory (data.shards)")
    p.add_argument("--stage", choices=["all", "decoder"], default="all", help="decoder: the text-only Y-decoder recipe")
    p.add_argument(
        "--checkpoint", default=None, metavar="DIR", help="--stage decoder: the checkpoint to give a decoder"
    )
    p.add_argument("--texts", default=None, metavar="FILE", help="--stage decoder: text corpus, one text a line")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set stage1.steps=100 (VALUE is YAML)",
    )


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    if args.stage == "decoder":
        return _run_text_decoder(args)
    from perception.commands.outputs import output_error
    from perception.train.config import load_train_config

    inputs = [args.config, args.data] + ([args.resume_from] if args.resume_from else [])
    if (rc := output_error("train", args.out, inputs, "--out", directory=True)) is not None:
        return rc
    from perception.train.loop import train
    from perception.train.state import ResumeError

    try:
        overrides = parse_overrides(args.overrides)
        if args.data:
            overrides["data.shards"] = args.data
        cfg = load_train_config(args.config, preset=args.preset, overrides=overrides)
    except ConfigError as exc:
        print(f"perception train: {exc}", file=sys.stderr)
        return 2
    from perception.train.config import FrozenTrainConfig, ShardedTrainConfig, TextDecoderConfig
    from perception.train.frozen import train_frozen

    if isinstance(cfg, TextDecoderConfig):  # a `recipe: text-decoder` file without --stage decoder
        return _run_text_decoder(args)

    if isinstance(cfg, ShardedTrainConfig):
        return _run_sharded(cfg, args)
    if args.data or args.resume_from:
        print(
            "perception train: --data and --resume-from belong to the sharded recipe (recipe: sharded)", file=sys.stderr
        )
        return 2

    if isinstance(cfg, FrozenTrainConfig):
        if args.resume:
            print(
                "perception train: --resume is not supported for a frozen-encoder learner (runs take minutes)",
                file=sys.stderr,
            )
            return 2
        sys.stdout.write(json.dumps(train_frozen(cfg, args.out)) + "\n")
        return 0
    try:
        result = train(cfg, args.out, resume=args.resume)
    except ResumeError as exc:
        print(f"perception train: {exc}", file=sys.stderr)
        return 2
    return _summary(result, last_losses=result.last_losses)


def _summary(result, **extra) -> int:
    """One JSON line with one write: under torchrun every rank prints its summary to the same pipe, and
    print()'s separate write of the newline let two ranks' lines run together."""
    line = {"out": str(result.out_dir), "global_step": result.global_step, "wall_s": round(result.wall_s, 1), **extra}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    return 0


def _run_sharded(cfg, args: argparse.Namespace) -> int:
    from perception.data.shards import ShardError
    from perception.train.sample_streams import StreamLayoutError
    from perception.train.sharded import train_sharded
    from perception.train.state import ResumeError

    resume_from = args.resume_from or (args.out if args.resume else None)
    try:
        result = train_sharded(cfg, args.out, resume_from=resume_from)
    except (ConfigError, ResumeError, ShardError, StreamLayoutError) as exc:
        print(f"perception train: {exc}", file=sys.stderr)
        return 2
    return _summary(result, last_loss=result.last_loss)


def _run_text_decoder(args: argparse.Namespace) -> int:
    from perception.commands.outputs import output_error
    from perception.model import CheckpointError
    from perception.model.phrase_bank import PhraseBankError
    from perception.train.config import load_text_decoder_config
    from perception.train.text_decoder import train_text_decoder

    inputs = [args.config, args.checkpoint, args.texts]
    if (rc := output_error("train", args.out, inputs, "--out", directory=True)) is not None:
        return rc  # writing over the checkpoint being read, or the corpus
    try:
        if not args.checkpoint or not args.texts:
            raise ConfigError("--stage decoder needs --checkpoint DIR and --texts FILE")
        cfg = load_text_decoder_config(args.config, parse_overrides(args.overrides))
        summary = train_text_decoder(args.checkpoint, args.texts, args.out, cfg)
    except (ConfigError, CheckpointError, PhraseBankError, FileNotFoundError) as exc:
        print(f"perception train: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
