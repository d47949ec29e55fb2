"""What each stage asks the model: (query, target text, group key) per row, drawn from ShapesWorld items.

Group keys drive multi-positive InfoNCE: rows with equal keys are positives for each other. A caption's
key is its canonical caption, so two paraphrases of the same event are not pushed apart; a VQA row's key
is its answer. Choices are drawn from a numpy Generator seeded by (seed, stage, step, rank): a resumed
run asks exactly the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler

from perception.train.config import Stage1Config, Stage2Config

STAGE_IDS = {"stage1": 1, "stage2": 2, "stage3": 3}


@dataclass
class TextRows:
    queries: list[str]
    targets: list[str]
    keys: list[str]  # group key per row (equal keys = positives)
    kinds: list[str]  # "caption" | "vqa" | "neutral", for logging


def row_rng(seed: int, stage: str, step: int, rank: int) -> np.random.Generator:
    return np.random.default_rng([seed, STAGE_IDS[stage], step, rank])


def stage1_rows(batch: dict, cfg: Stage1Config, rng: np.random.Generator) -> TextRows:
    """Neutral query -> one random paraphrase of the clip's caption."""
    caps = batch["captions"]
    targets = [c[int(rng.integers(len(c)))] for c in caps]
    return TextRows([cfg.neutral_query] * len(caps), targets, [c[0] for c in caps], ["neutral"] * len(caps))


def stage2_rows(batch: dict, cfg: Stage2Config, neutral: str, rng: np.random.Generator) -> TextRows:
    """Per row: keep the stage-1 form (stage1_fraction), else a VQA pair (vqa_fraction) or a caption
    asked for in words."""
    rows = TextRows([], [], [], [])
    for caps, qas in zip(batch["captions"], batch["qa"], strict=True):
        u = rng.random()
        if u < cfg.stage1_fraction or (u >= cfg.stage1_fraction and not qas and not cfg.caption_queries):
            rows.queries.append(neutral)
            rows.targets.append(caps[int(rng.integers(len(caps)))])
            rows.keys.append(caps[0])
            rows.kinds.append("neutral")
        elif qas and rng.random() < cfg.vqa_fraction:
            qa = qas[_question_index(qas, cfg.vqa_kind_weights, rng)]
            rows.queries.append(qa["question"])
            rows.targets.append(qa["answer"])
            rows.keys.append("answer:" + qa["answer"])
            rows.kinds.append("vqa")
        else:
            rows.queries.append(cfg.caption_queries[int(rng.integers(len(cfg.caption_queries)))])
            rows.targets.append(caps[int(rng.integers(len(caps)))])
            rows.keys.append(caps[0])
            rows.kinds.append("caption")
    return rows


def _question_index(qas: list[dict], weights: dict[str, float], rng: np.random.Generator) -> int:
    """Uniform over the clip's questions, or weighted by kind (the uniform draw is kept as it was, so
    recipes without weights ask exactly the questions they asked before)."""
    if not weights:
        return int(rng.integers(len(qas)))
    w = np.array([weights.get(qa["kind"], 1.0) for qa in qas], dtype=np.float64)
    if w.sum() <= 0:
        return int(rng.integers(len(qas)))
    return int(rng.choice(len(qas), p=w / w.sum()))


def decoder_texts(captions: list[list[str]], rng: np.random.Generator) -> list[str]:
    """Stage 3: one random paraphrase per clip."""
    return [c[int(rng.integers(len(c)))] for c in captions]


class StepBatches(Sampler[list[int]]):
    """Index batches for stage-local steps [start, steps) of one rank: clip indices never repeat across
    steps, ranks or stages (offset separates the stages), and depend only on (step, rank). With `modulo`
    they cycle through a fixed pool of clips instead."""

    def __init__(
        self, start: int, steps: int, batch: int, rank: int, world: int, offset: int, modulo: int | None = None
    ) -> None:
        self.start, self.steps, self.batch, self.modulo = start, steps, batch, modulo
        self.rank, self.world, self.offset = rank, world, offset

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = self.offset + (step * self.world + self.rank) * self.batch
            idx = range(first, first + self.batch)
            yield [i % self.modulo for i in idx] if self.modulo else list(idx)


def keys_to_groups(keys: list[str]) -> torch.Tensor:
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(k, len(ids)) for k in keys], dtype=torch.long)
