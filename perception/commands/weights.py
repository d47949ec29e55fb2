"""`perception weights import FORMAT FILE --out DIR [--x-encoder DIR --query-lm DIR --text-encoder DIR]`.

Turns a checkpoint published in another project's format into our checkpoint directory, which
`VLJepa.load`, `perception up` (model.checkpoint), `eval`, `test` and `mcp` then use like any other.
The file is read as data (never unpickled into code); every tensor's name and shape is checked against
the architecture the given pretrained directories describe, and a mismatch is refused, named, exit 2.
Formats: perception/model/importers/__init__.py (IMPORTERS).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "import a published checkpoint (e.g. open-vljepa's best.pt) as a perception checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = sub.add_parser("import", help="convert FILE of format FORMAT into --out DIR")
    imp.add_argument("format", help="checkpoint format: open-vljepa")
    imp.add_argument("file", help="the published checkpoint file, e.g. best.pt")
    imp.add_argument("--out", required=True, help="directory to write (config.json + model.safetensors)")
    imp.add_argument("--x-encoder", default=None, metavar="DIR", help="local V-JEPA 2 snapshot (vjepa2-vitl-fpc64-256)")
    imp.add_argument("--query-lm", default=None, metavar="DIR", help="local Llama-3.2-1B snapshot (gated)")
    imp.add_argument("--text-encoder", default=None, metavar="DIR", help="local EmbeddingGemma-300M snapshot (gated)")


def run(args: argparse.Namespace) -> int:
    from perception.model.importers import IMPORTERS, ImportRefused, get_importer
    from perception.model.importers.torch_file import UnsafeFileError
    from perception.model.weights import MissingWeightsError

    try:
        module = get_importer(args.format)
        parts = {name: getattr(args, name) for name in IMPORTERS[args.format].parts}
        absent = [f"--{name.replace('_', '-')}" for name, value in parts.items() if not value]
        if absent:
            raise ImportRefused(f"format {args.format} needs {', '.join(absent)} (local pretrained directories)")
        summary = module.import_checkpoint(args.file, args.out, **parts)
    except (ImportRefused, UnsafeFileError, MissingWeightsError, FileNotFoundError) as exc:
        print(f"perception weights import: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
