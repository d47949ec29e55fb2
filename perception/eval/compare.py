"""`perception eval compare`: VL-JEPA against a token-generative VLM, same frozen X-encoder, data and budgets.

The paper's controlled comparison (section 4.5): at each training-sample budget, train both learners of
perception/train/frozen.py on the same cached features and rows, then score both on the same test clips:

- captions: VL-JEPA decodes its neutral-query S^_Y with the source's Y-decoder; the VLM generates greedily
  (KV-cached) after [visual ; BOS]. CIDEr-D and slot accuracy against the clip's references;
- classification top-1 over the 240 combination texts "the <colour> <shape> <action>": VL-JEPA takes the
  nearest text embedding, the VLM the lowest perplexity (mean per-token NLL) over the same texts;
- VQA: VL-JEPA's nearest candidate embedding, the VLM's highest-likelihood candidate;
- trainable parameters and training throughput (rows/s, both measured in this run on this machine).

Every figure carries a 95 % bootstrap interval over clips (perception/eval/bootstrap.py). Budgets count
the rows of stages 1 + 2; with a pool of P clips a budget above P sees each clip more than once (both
learners alike).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bus.logs import get_logger
from perception.config import CONFIG_DIR
from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.eval.bootstrap import accuracy, per_key
from perception.eval.metrics import vqa_accuracy
from perception.eval.stream_embed import batches
from perception.eval.suite import ClipBatch, caption_metrics, class_texts, classification_metrics
from perception.model import VLJepa
from perception.model.vlm import TokenVLM
from perception.train.config import FrozenTrainConfig, load_train_config
from perception.train.frozen import FeaturePool, make_learner, train_learner

log = get_logger("eval.compare")

LEARNERS = ("jepa", "vlm")
HEADLINE = ("caption_cider", "caption_slot_accuracy", "classification_top1", "vqa_accuracy")


@dataclass(frozen=True)
class CompareConfig:
    budgets: tuple[int, ...] = (4096, 16384, 65536)  # rows seen in stages 1 + 2
    clips: int = 600  # test clips (the VLM's perplexity over 240 texts costs ~0.4 s a clip on 2 cores)
    split: str = "heldout"
    seed: int = 0  # test clips' seed
    batch: int = 32  # eval batch (clips)
    train_config: str | None = None  # FrozenTrainConfig YAML; default configs/train-tiny-vlm.yaml
    pool: int | None = None  # training clips; None: the train config's
    lr_scale: tuple[tuple[str, float], ...] = (("jepa", 1.0), ("vlm", 1.0))  # x both stages' peak LR
    sweep: tuple[float, ...] = ()  # lr scales to try per learner instead (choose on val, then fix lr_scale)
    speed_steps: int = 10  # throughput probe: steps per round
    speed_rounds: int = 5  # rounds per learner, alternating

    @classmethod
    def quick(cls) -> CompareConfig:
        return cls(budgets=(128, 256), clips=16, pool=256, speed_steps=2, speed_rounds=1)


@dataclass
class TestClips:
    """The test clips once through the frozen X-encoder: both learners score the same S_V."""

    s_v: torch.Tensor  # [N,Nv,Dv]
    batch: ClipBatch  # slots, captions (s_hat unused here)
    qa: list[list[dict]] = field(default_factory=list)


def test_clips(source: VLJepa, cfg: CompareConfig) -> TestClips:
    xc = source.cfg.x_encoder
    data = ShapesWorldClips(cfg.clips, seed=cfg.seed, split=cfg.split, frames=xc.frames, size=xc.image_size)
    s_v, out, qa = [], ClipBatch(torch.empty(0)), []
    for idx in batches(len(data), cfg.batch):
        b = collate_clips([data[i] for i in idx])
        s_v.append(source.encode_video(b["video"]).float().clone())
        out.slots += b["slots"]
        out.captions += b["captions"]
        qa += b["qa"]
    return TestClips(torch.cat(s_v), out, qa)


def _vqa_rows(clips: TestClips) -> list[tuple[int, dict]]:
    return [(i, q) for i, qas in enumerate(clips.qa) for q in qas]


def score_jepa(model: VLJepa, clips: TestClips, cfg: CompareConfig) -> dict[str, Any]:
    texts = model.embed_text(class_texts())  # [240,D]
    s_hat, pred, hyps = [], [], []
    for idx in batches(len(clips.s_v), cfg.batch):
        h = model.predict(clips.s_v[list(idx)], "")  # [b,D]
        s_hat.append(h)
        pred += (h @ texts.T).argmax(1).tolist()
        hyps += model.decode(h)
    rows = _vqa_rows(clips)
    answers: list[str] = []
    for idx in batches(len(rows), 256):
        part = [rows[k] for k in idx]
        q_hat = model.predict(clips.s_v[[i for i, _ in part]], [q["question"] for _, q in part])
        answers += model.answer(q_hat, [q["candidates"] for _, q in part]).choices
    return _metrics(pred, hyps, answers, rows, clips)


def score_vlm(vlm: TokenVLM, clips: TestClips, cfg: CompareConfig) -> dict[str, Any]:
    labels = class_texts()
    pred, hyps = [], []
    t0 = time.perf_counter()
    for k, idx in enumerate(batches(len(clips.s_v), cfg.batch)):
        s_v = clips.s_v[list(idx)]
        pred += vlm.classify(s_v, "", labels).tolist()
        hyps += vlm.generate(s_v, "")
        if k % 5 == 0:
            log.info("vlm scoring", clips=len(pred), of=len(clips.s_v), s=round(time.perf_counter() - t0, 1))
    rows = _vqa_rows(clips)
    answers: list[str] = []
    for idx in batches(len(rows), 128):
        part = [rows[k] for k in idx]
        cands = [q["candidates"] for _, q in part]
        best = vlm.answer(clips.s_v[[i for i, _ in part]], [q["question"] for _, q in part], cands).tolist()
        answers += [c[j] for c, j in zip(cands, best, strict=True)]
    return _metrics(pred, hyps, answers, rows, clips)


def _metrics(pred: list[int], hyps: list[str], answers: list[str], rows, clips: TestClips) -> dict[str, Any]:
    vqa = vqa_accuracy(answers, [q["answer"] for _, q in rows], [q["kind"] for _, q in rows])
    caps = caption_metrics(hyps, clips.batch)
    return {
        **classification_metrics(pred, clips.batch.slots),
        "vqa_accuracy": accuracy(vqa.item_correct),
        "vqa_accuracy_per_type": per_key(vqa.item_correct, [q["kind"] for _, q in rows]),
        **caps,
    }


def train_config(cfg: CompareConfig) -> FrozenTrainConfig:
    path = cfg.train_config or CONFIG_DIR / "train-tiny-vlm.yaml"
    loaded = load_train_config(path)
    if not isinstance(loaded, FrozenTrainConfig):
        raise ValueError(f"{path} is not a frozen-encoder training config (it has no `learner:`)")
    return loaded


def run_learner(
    kind: str,
    budget: int,
    base: FrozenTrainConfig,
    source: VLJepa,
    pool: FeaturePool,
    clips: TestClips,
    cfg: CompareConfig,
    lr_scale: float = 1.0,
):
    """Train one learner at one budget and score it: (metrics row, the trained learner)."""
    tcfg = base.model_copy(
        update={
            "learner": kind,
            "samples": budget,
            "stage1": base.stage1.model_copy(update={"lr": base.stage1.lr * lr_scale}),
            "stage2": base.stage2.model_copy(update={"lr": base.stage2.lr * lr_scale}),
        }
    )
    learner = make_learner(kind, source, tcfg.seed, tcfg.size_ratio)
    run = train_learner(learner, pool, tcfg)
    t0 = time.perf_counter()
    with torch.no_grad():
        metrics = score_jepa(learner.model, clips, cfg) if kind == "jepa" else score_vlm(learner.model, clips, cfg)
    row = {
        **metrics,
        "lr_scale": lr_scale,
        "trainable_params": run.trainable_params,
        "train_samples": run.samples,
        "train_samples_per_s": round(run.samples_per_s, 1),
        "train_wall_s": round(run.wall_s, 1),
        "final_losses": run.losses,
        "eval_wall_s": round(time.perf_counter() - t0, 1),
    }
    log.info(
        "learner scored",
        budget=budget,
        learner=kind,
        lr_scale=lr_scale,
        **{k: round(metrics[k]["value"], 3) for k in HEADLINE},
        samples_per_s=round(run.samples_per_s, 1),
    )
    return row, learner


def throughput(
    source: VLJepa, pool: FeaturePool, base: FrozenTrainConfig, steps: int = 10, rounds: int = 5
) -> dict[str, Any]:
    """Training rows/s of both learners side by side: rounds of `steps` steps, alternating learners, so a
    noisy machine slows both alike; the median round of each, and their ratio."""
    learners = {k: make_learner(k, source, base.seed, base.size_ratio) for k in LEARNERS}
    cfg = base.model_copy(update={"samples": steps * base.batch_size, "log_every": 10**9})
    rates: dict[str, list[float]] = {k: [] for k in LEARNERS}
    for r in range(rounds):
        for kind in LEARNERS if r % 2 == 0 else LEARNERS[::-1]:
            rates[kind].append(train_learner(learners[kind], pool, cfg).samples_per_s)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {
        "rows_per_s": {k: round(v, 1) for k, v in med.items()},
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "jepa_over_vlm": round(med["jepa"] / med["vlm"], 2),
        "batch_size": base.batch_size,
        "threads": torch.get_num_threads(),
    }


def compare(source_dir: str | Path, cfg: CompareConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train both learners at every budget and score them on one set of test clips. out_dir: each
    trained learner is saved to out_dir/<budget>/<learner> (the VLM loadable by TokenVLM.load). With
    cfg.sweep, each learner is trained at every lr scale instead (rows keyed "<learner>@<scale>")."""
    base = train_config(cfg)
    source = VLJepa.load(source_dir, device="cpu", dtype="float32")
    pool = FeaturePool.build(source, cfg.pool or base.pool, seed=base.data_seed)
    log.info("feature pool ready", clips=len(pool), encode_s=round(pool.encode_s, 1))
    clips = test_clips(source, cfg)
    log.info("test clips encoded", clips=cfg.clips, split=cfg.split)
    speed = throughput(source, pool, base, cfg.speed_steps, cfg.speed_rounds)
    log.info("training throughput side by side", **speed["rows_per_s"], ratio=speed["jepa_over_vlm"])
    scales = dict(cfg.lr_scale)
    rows: dict[str, dict[str, Any]] = {}
    for budget in cfg.budgets:
        rows[str(budget)] = {}
        for kind in LEARNERS:
            for scale in cfg.sweep or (scales.get(kind, 1.0),):
                row, learner = run_learner(kind, budget, base, source, pool, clips, cfg, scale)
                rows[str(budget)][f"{kind}@{scale:g}" if cfg.sweep else kind] = row
                if out_dir is not None and not cfg.sweep:
                    dest = Path(out_dir) / str(budget) / kind
                    learner.model.save(dest, source=source_dir) if kind == "vlm" else learner.model.save(dest)
    return {
        "source": str(source_dir),
        "config": asdict(cfg),
        "train_config": base.model_dump(mode="json"),
        "pool": len(pool),
        "budgets": list(cfg.budgets),
        "throughput": speed,
        "rows": rows,
    }


def summary_table(result: dict[str, Any]) -> str:
    def f(m: dict) -> str:
        lo, hi = m["ci95"]
        return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = [
        "| budget (rows) | model | trainable params | rows/s | CIDEr | caption slots | classification top-1 | VQA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"jepa": "VL-JEPA", "vlm": "VLM"}
    for budget, row in result["rows"].items():
        for key, m in row.items():
            kind, _, scale = key.partition("@")
            name = names[kind] + (f" (lr x{scale})" if scale else "")
            lines.append(
                f"| {int(budget):,} | {name} | {m['trainable_params']:,} | "
                f"{m['train_samples_per_s']:.0f} | " + " | ".join(f(m[k]) for k in HEADLINE) + " |"
            )
    t = result["throughput"]
    lines.append(
        f"\ntraining rows/s side by side (batch {t['batch_size']}, {t['threads']} threads): VL-JEPA "
        f"{t['rows_per_s']['jepa']:.0f}, VLM {t['rows_per_s']['vlm']:.0f} ({t['jepa_over_vlm']:.2f}x)"
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {
        "caption_cider": "caption CIDEr-D",
        "caption_slot_accuracy": "caption slot accuracy",
        "classification_top1": "classification top-1 (240 texts)",
        "vqa_accuracy": "VQA accuracy",
    }
    budgets = [int(b) for b in result["rows"]]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, key in zip(axes, HEADLINE, strict=True):
        for kind, colour, label in (("jepa", "tab:blue", "VL-JEPA"), ("vlm", "tab:orange", "VLM (tokens)")):
            ms = [result["rows"][str(b)][kind][key] for b in budgets]
            v = [m["value"] for m in ms]
            lo = [m["value"] - m["ci95"][0] for m in ms]
            hi = [m["ci95"][1] - m["value"] for m in ms]
            ax.errorbar(budgets, v, yerr=[lo, hi], marker="o", capsize=3, color=colour, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training rows (stages 1 + 2)")
        ax.set_title(titles[key], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    n = result["config"]["clips"]
    fig.suptitle(f"Same frozen X-encoder, same rows: VL-JEPA vs a token VLM ({n} test clips, 95 % intervals)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def with_sizes(
    cfg: CompareConfig,
    budgets: str | None,
    clips: int | None,
    split: str | None,
    sweep: str | None = None,
    lr_scale: str | None = None,
) -> CompareConfig:
    """CLI strings -> config: budgets "4096,16384", sweep "0.5,1,2", lr_scale "jepa=1,vlm=2"."""
    changes: dict[str, Any] = {}
    if sweep:
        changes["sweep"] = tuple(float(x) for x in sweep.split(","))
    if lr_scale:
        pairs = [item.split("=") for item in lr_scale.split(",")]
        if any(len(p) != 2 or p[0] not in LEARNERS for p in pairs):
            raise ValueError(f"--lr-scale expects learner=scale pairs (jepa, vlm), got {lr_scale!r}")
        changes["lr_scale"] = tuple((k, float(v)) for k, v in pairs)
    if budgets:
        changes["budgets"] = tuple(int(b) for b in budgets.split(","))
    if clips:
        changes["clips"] = clips
    if split:
        changes["split"] = split
    return replace(cfg, **changes)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
