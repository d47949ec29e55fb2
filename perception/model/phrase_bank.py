"""Captions by retrieval: a checkpoint without a trained Y-decoder describes an embedding by the nearest
phrases of a phrase bank, with their cosine scores.

A bank is plain text, one phrase a line (`#` starts a comment). Phrase files are data a user hands us, so
what they hold is bounded (phrases per bank, characters per phrase) before anything is allocated for them.
The bank's embeddings come from the model's own Y-encoder, computed once per model and kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BANK = "configs/phrases.txt"
MAX_PHRASES = 20_000  # all banks together
MAX_PHRASE_CHARS = 200
EMBED_BATCH = 64  # phrases per Y-encoder pass


class PhraseBankError(ValueError):
    """A phrase file that cannot be read or holds more than a bank may."""


@dataclass
class Description:
    """What a model says about one embedding: decoded text, or the nearest bank phrase and its cosine."""

    text: str
    retrieved: bool  # True: a bank phrase chosen by similarity, not text a decoder wrote
    score: float | None = None  # retrieved: cosine between the embedding and the phrase's S_Y
    alternatives: tuple[str, ...] = ()  # retrieved: the next nearest phrases, nearest first


def resolve_bank_path(path: str | Path) -> Path:
    """A relative path as given when it exists here, else under the repo root (where the default ships)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        p = REPO_ROOT / p
    return p


def read_phrases(paths: Sequence[str | Path]) -> list[str]:
    """The phrases of every file, in order, each once; PhraseBankError naming the file that is wrong."""
    out: dict[str, None] = {}
    for path in paths:
        p = resolve_bank_path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PhraseBankError(f"phrase bank {path}: cannot read it ({type(exc).__name__}: {exc})") from None
        for n, line in enumerate(lines, 1):
            phrase = line.split("#", 1)[0].strip()
            if not phrase:
                continue
            if len(phrase) > MAX_PHRASE_CHARS:
                raise PhraseBankError(f"phrase bank {path}:{n}: phrase longer than {MAX_PHRASE_CHARS} characters")
            out[phrase] = None
            if len(out) > MAX_PHRASES:
                raise PhraseBankError(f"phrase banks hold more than {MAX_PHRASES} phrases (at {path}:{n})")
    if not out:
        raise PhraseBankError(f"phrase banks {[str(p) for p in paths]} hold no phrase")
    return list(out)


class PhraseBank:
    """Phrases and their L2-normalised S_Y [M,D]; `describe` finds the nearest for each row of S^_Y."""

    def __init__(self, phrases: list[str], embed: Callable[[list[str]], torch.Tensor]):
        self.phrases = phrases
        rows = [embed(phrases[i : i + EMBED_BATCH]) for i in range(0, len(phrases), EMBED_BATCH)]
        self.embeddings = F.normalize(torch.cat(rows).float(), dim=-1)  # [M,D]

    def describe(self, s_hat: torch.Tensor, alternatives: int = 2) -> list[Description]:
        """s_hat [B,D] -> one Description per row: the nearest phrase, its cosine, the next ones."""
        z = F.normalize(s_hat.float().to(self.embeddings.device), dim=-1)  # [B,D]
        scores = z @ self.embeddings.T  # [B,M]
        k = min(1 + alternatives, len(self.phrases))
        top, idx = scores.topk(k, dim=-1)  # [B,k]
        out = []
        for row_s, row_i in zip(top.tolist(), idx.tolist()):
            out.append(
                Description(
                    text=self.phrases[row_i[0]],
                    retrieved=True,
                    score=round(row_s[0], 4),
                    alternatives=tuple(self.phrases[i] for i in row_i[1:]),
                )
            )
        return out
