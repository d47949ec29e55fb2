"""CIDEr-D, the captioning metric of the coco-caption toolkit, implemented here without its Java tokenizer.

Definition (Vedantam et al. 2015, as in pycocoevalcap's `CiderScorer`): each sentence becomes n-gram
counts for n = 1..4, weighted by tf-idf where the document frequency of an n-gram is the number of
*items* (images / clips) whose references contain it and idf = log(N_items) - log(max(1, df)). For each
n, the clipped cosine similarity  sum_g min(h_g, r_g) * r_g / (|h| |r|)  between candidate and each
reference is multiplied by a gaussian length penalty exp(-(l_h - l_r)^2 / (2 sigma^2)), sigma = 6;
scores are averaged over n, over references, and multiplied by 10.

Quirks kept on purpose so that numbers match the toolkit: the "length" is the number of bigrams of a
sentence (coco-caption counts it that way), and idf comes from the references of the scored corpus,
so a corpus of a single item scores 0 (every n-gram has idf log 1 - log 1 = 0).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NGram = tuple[str, ...]

_PUNCT = re.compile(r"[^\w\s]|_")


def tokenize(text: str) -> list[str]:
    """Lowercase, replace punctuation by spaces, split on whitespace ("The red-circle." -> the red circle)."""
    return _PUNCT.sub(" ", text.lower()).split()


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[NGram]:
    counts: Counter[NGram] = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


@dataclass(frozen=True)
class _Vector:
    """tf-idf weights split by n-gram order, their norms, and the coco "length" (bigram count)."""

    weights: list[dict[NGram, float]]
    norms: list[float]
    length: int


@dataclass(frozen=True)
class CiderResult:
    score: float  # corpus CIDEr-D: mean of per_item
    per_item: np.ndarray  # (N,) one score per candidate


class CiderD:
    """CIDEr-D scorer whose idf is fixed by a reference corpus, so that many candidate sets can be
    scored against the same references (e.g. every point of a selective-decoding curve)."""

    def __init__(self, references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> None:
        if len(references) == 0:
            raise ValueError("CIDEr-D needs at least one item of references")
        for i, refs in enumerate(references):
            if isinstance(refs, str) or len(refs) == 0:
                raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")
        self.n = n
        self.sigma = sigma
        self._ref_counts = [[_ngram_counts(tokenize(r), n) for r in refs] for refs in references]
        df: Counter[NGram] = Counter()
        for refs in self._ref_counts:
            df.update({g for counts in refs for g in counts})
        self._df = df
        self._log_n_items = math.log(float(len(references)))
        self._ref_vectors = [[self._vector(c) for c in refs] for refs in self._ref_counts]

    def __len__(self) -> int:
        return len(self._ref_counts)

    def _vector(self, counts: Counter[NGram]) -> _Vector:
        weights: list[dict[NGram, float]] = [{} for _ in range(self.n)]
        sq = [0.0] * self.n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            w = float(tf) * (self._log_n_items - math.log(max(1.0, float(self._df.get(gram, 0)))))
            weights[k][gram] = w
            sq[k] += w * w
            if k == 1:
                length += tf
        return _Vector(weights, [math.sqrt(s) for s in sq], length)

    def _similarity(self, hyp: _Vector, ref: _Vector) -> np.ndarray:
        delta = float(hyp.length - ref.length)
        penalty = math.exp(-(delta**2) / (2 * self.sigma**2))
        val = np.zeros(self.n)
        for k in range(self.n):
            rw = ref.weights[k]
            dot = sum(min(w, rw.get(g, 0.0)) * rw.get(g, 0.0) for g, w in hyp.weights[k].items())
            if hyp.norms[k] != 0 and ref.norms[k] != 0:
                dot /= hyp.norms[k] * ref.norms[k]
            val[k] = dot * penalty
        return val

    def score(self, candidates: Sequence[str]) -> CiderResult:
        """Score candidates[i] against references[i]; returns the corpus mean and per-item scores."""
        if len(candidates) != len(self._ref_counts):
            raise ValueError(f"got {len(candidates)} candidates for {len(self._ref_counts)} reference items")
        per_item = np.zeros(len(candidates))
        for i, (cand, refs) in enumerate(zip(candidates, self._ref_vectors, strict=True)):
            if not isinstance(cand, str):
                raise TypeError(f"candidates[{i}] must be a string, got {type(cand).__name__}")
            hyp = self._vector(_ngram_counts(tokenize(cand), self.n))
            total = sum((self._similarity(hyp, r) for r in refs), np.zeros(self.n))
            per_item[i] = float(np.mean(total)) / len(refs) * 10.0
        return CiderResult(score=float(per_item.mean()), per_item=per_item)


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> CiderResult:
    """CIDEr-D of candidates[i] against references[i] (a list of paraphrases), idf from `references`."""
    return CiderD(references, n=n, sigma=sigma).score(candidates)
