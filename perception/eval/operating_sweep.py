"""Choose the events node's segmenter shape on validation streams by the operating-point headline.

At each decode rate the threshold is set by bisection to hit the rate, so what a setting changes is
where boundaries fall, not how many: `window` (look-ahead steps averaged against the segment),
`confirm` (steps above threshold before declaring), `min_len_s`. Each row is the online method's
paired difference to uniform at 1 Hz at every rate (operating_point.py), on embeddings computed once
per model (the eval cache), so the grid costs decodes only. Choose on `val`; report on `heldout` with
`perception eval`.

    python -m perception.eval.operating_sweep checkpoints/tiny --split val --window 4,6,8 --confirm 1,2,3
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from bus.logs import get_logger
from perception.commands.evaluate import DEFAULT_CACHE
from perception.eval.events_sweep import floats
from perception.eval.operating_point import OPERATING_RATES_HZ, decode_cache, operating_point_report, summary_lines
from perception.eval.stream_captions import service_segmenter
from perception.eval.suite import SuiteConfig, embed_streams, scored_streams, stream_decoder
from perception.model import VLJepa
from perception.nodes.segmenter import segment_steps

log = get_logger("eval.operating_sweep")


def sweep(
    model: VLJepa, split: str, grid: dict[str, list[float]], cfg: SuiteConfig, methods: tuple[str, ...] = ("online",)
) -> list[dict]:
    data = embed_streams(model, split, cfg)
    streams, sets, _ = scored_streams(data)
    decode = stream_decoder(model, cfg)
    cache = decode_cache(decode)  # one memo for the whole grid: a segment two settings share is decoded once
    base = service_segmenter(cfg.events_config, cfg.step_s)
    rows = []
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        setting = dict(zip(names, values, strict=True))
        changes = {k: int(v) for k, v in setting.items() if k in ("window", "confirm")}
        if "min_len_s" in setting:
            changes["min_len"] = segment_steps(setting["min_len_s"], None, cfg.step_s)[0]
        seg_cfg = dataclasses.replace(base, **changes)
        report = operating_point_report(
            streams,
            decode,
            seed_sets=sets,
            online=seg_cfg,
            resamples=cfg.resamples,
            methods=methods,
            cache=cache,
        )
        online = report["all"]["online"]
        diffs = [r["diff"]["value"] for r in online["rows"]]
        rows.append(
            {
                "setting": setting,
                "headline": online["headline"],
                "mean_diff": float(np.mean(diffs)),
                "rows": online["rows"],
                "reference_cider": report["all"]["reference_cider"],
                "sets_overlap": report["sets_overlap"]["online"],
                "report": report,
            }
        )
        head = online["headline"]
        log.info(
            "setting",
            **setting,
            headline=None if head is None else round(head["reduction"], 2),
            diffs=[round(d, 3) for d in diffs],
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default="checkpoints/tiny")
    p.add_argument("--split", default="val", help="val (choose here) or heldout (only to report)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--streams-per-seed", type=int, default=24)
    p.add_argument("--window", type=floats, default=[4])
    p.add_argument("--confirm", type=floats, default=[2])
    p.add_argument("--min-len-s", type=floats, default=[0.5])
    p.add_argument("--config", default=None, help="service config whose other events settings to keep")
    p.add_argument("--methods", default="online", help="online (the grid), or online,offline,uniform (a report)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resamples", type=int, default=500)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VLJepa.load(args.checkpoint, device="cpu", dtype="float32")
    model.eval()
    cfg = SuiteConfig(
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        streams_per_seed=args.streams_per_seed,
        events_config=args.config,
        resamples=args.resamples,
        cache_dir=args.cache,
    )
    grid = {"window": args.window, "confirm": args.confirm, "min_len_s": args.min_len_s}
    rows = sweep(model, args.split, grid, cfg, tuple(args.methods.split(",")))
    out = {
        "checkpoint": args.checkpoint,
        "split": args.split,
        "seeds": list(cfg.seeds),
        "streams": len(cfg.stream_seeds()),
        "rates_hz": list(OPERATING_RATES_HZ),
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    for r in sorted(rows, key=lambda r: -r["mean_diff"]):
        head = "none" if r["headline"] is None else f"{r['headline']['reduction']:.2f}x"
        cells = ", ".join(f"{x['rate_hz']:g}Hz {x['diff']['value']:+.3f}" for x in r["rows"])
        print(f"{json.dumps(r['setting'])}: headline {head}, mean paired diff {r['mean_diff']:+.3f}, {cells}")
        print("\n".join(summary_lines(r["report"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
