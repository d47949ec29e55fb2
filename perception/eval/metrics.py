"""Task metrics of the evaluation suite: classification top-1, text->clip recall@K, VQA accuracy, slot accuracy.

Inputs are plain arrays and strings so that any model (or a hand-written toy) can be scored. Text
comparisons use `normalize_text` (lowercase, punctuation stripped, whitespace collapsed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from perception.eval.cider import tokenize


def normalize_text(text: str) -> str:
    """Canonical form used for every string equality in the metrics ("The red circle." == "the red circle")."""
    return " ".join(tokenize(text))


def _scores_matrix(scores: np.ndarray, n_rows: int, name: str) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape ({n_rows}, C>0), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def top1_accuracy(scores: np.ndarray, labels: Sequence[int]) -> float:
    """Fraction of rows whose highest score (first index on ties) is the true label.

    scores: (N, C) similarity of each item to each class (e.g. clip embedding vs label text embeddings).
    """
    if len(labels) == 0:
        raise ValueError("top1_accuracy needs at least one item")
    arr = _scores_matrix(scores, len(labels), "scores")
    gold = np.asarray(labels)
    if gold.min() < 0 or gold.max() >= arr.shape[1]:
        raise ValueError(f"labels must lie in [0, {arr.shape[1]}), got min {gold.min()} max {gold.max()}")
    return float(np.mean(arr.argmax(axis=1) == gold))


def recall_at_k(
    similarity: np.ndarray,
    query_captions: Sequence[str],
    clip_captions: Sequence[str],
    k: int = 1,
) -> float:
    """Text -> clip recall@K: a query is correct when one of its K most similar clips has a ground-truth
    caption equal (after `normalize_text`) to the query's own ground-truth caption.

    similarity: (Q, C) query-by-clip scores. Ties are ranked by clip index (stable sort), so a model that
    outputs constant scores is not rewarded.
    """
    if len(query_captions) == 0:
        raise ValueError("recall_at_k needs at least one query")
    sim = _scores_matrix(similarity, len(query_captions), "similarity")
    if sim.shape[1] != len(clip_captions):
        raise ValueError(f"similarity has {sim.shape[1]} clips but {len(clip_captions)} clip captions")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    clip_norm = np.array([normalize_text(c) for c in clip_captions], dtype=object)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (Q, k) clip indices, best first
    hits = [bool(np.any(clip_norm[order[q]] == normalize_text(query_captions[q]))) for q in range(len(query_captions))]
    return float(np.mean(hits))


@dataclass(frozen=True)
class VQAAccuracy:
    overall: float  # micro average over all questions
    per_type: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # questions per type
    item_correct: tuple[bool, ...] = ()  # per question, in input order (for bootstrap intervals)


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[str], question_types: Sequence[str]) -> VQAAccuracy:
    """Exact-match accuracy (after `normalize_text`) overall and per question type."""
    n = len(predictions)
    if n == 0:
        raise ValueError("vqa_accuracy needs at least one question")
    if len(answers) != n or len(question_types) != n:
        raise ValueError(f"length mismatch: {n} predictions, {len(answers)} answers, {len(question_types)} types")
    correct: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    items = []
    for pred, ans, qtype in zip(predictions, answers, question_types, strict=True):
        ok = normalize_text(pred) == normalize_text(ans)
        counts[qtype] += 1
        correct[qtype] += int(ok)
        items.append(ok)
    per_type = {t: correct[t] / counts[t] for t in sorted(counts)}
    return VQAAccuracy(
        overall=sum(correct.values()) / n,
        per_type=per_type,
        counts=dict(sorted(counts.items())),
        item_correct=tuple(items),
    )


SlotParser = Callable[[str], Mapping[str, str | None]]


@dataclass(frozen=True)
class SlotAccuracy:
    all_slots: float  # fraction of captions with every slot right
    per_slot: dict[str, float] = field(default_factory=dict)
    parse_failures: int = 0  # hypotheses the parser rejected (counted wrong on every slot)
    item_correct: dict[str, tuple[bool, ...]] = field(default_factory=dict)  # per slot and "all", per caption


def slot_accuracy(
    hypotheses: Sequence[str], references: Sequence[Mapping[str, str]], parse: SlotParser
) -> SlotAccuracy:
    """Accuracy of the slots (e.g. colour, shape, action) that `parse` reads from generated captions.

    references[i] holds the true slot values of item i; a slot is right when the parsed value equals it
    (after `normalize_text`). A parser raising ValueError on a hypothesis counts that caption as wrong on
    every slot rather than aborting the evaluation.
    """
    n = len(hypotheses)
    if n == 0:
        raise ValueError("slot_accuracy needs at least one caption")
    if len(references) != n:
        raise ValueError(f"length mismatch: {n} hypotheses, {len(references)} references")
    slots = sorted({s for ref in references for s in ref})
    if not slots:
        raise ValueError("references define no slots")
    items: dict[str, list[bool]] = {s: [] for s in [*slots, "all"]}
    failures = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        try:
            parsed = parse(hyp)
        except ValueError:
            parsed, failures = {}, failures + 1
        ok_all = True
        for s in slots:
            value = parsed.get(s)
            ok = s in ref and value is not None and normalize_text(value) == normalize_text(ref[s])
            items[s].append(ok)
            ok_all &= ok
        items["all"].append(ok_all)
    return SlotAccuracy(
        all_slots=sum(items["all"]) / n,
        per_slot={s: sum(items[s]) / n for s in slots},
        parse_failures=failures,
        item_correct={k: tuple(v) for k, v in items.items()},
    )
