"""TokenVLM: the token-generative VLM baseline of the paper's controlled comparison.

Same X-encoder (a frozen copy of a VL-JEPA model's, at its current weights) and same data as VL-JEPA, but
the classical recipe: visual tokens projected Dv -> H into a causal LM that is trained with next-token
cross-entropy on the target text, the query being an unscored text prefix. Only the training objective
differs from VL-JEPA (token space vs embedding space), which is what the comparison isolates.

Sequence (one row, right-padded):  [v_1 .. v_N ; q_1 .. q_Lq ; BOS ; t_1 .. t_Lt ; EOS ; PAD ...]
    visual tokens (N)    query (no specials)   target text ([CLS]/[SEP] of the Y-encoder's tokenizer)
Scored: t_1 .. t_Lt and EOS (each predicted by the position before it). The query and BOS are context only.

Text side as in the builtin Y-decoder: the Y-encoder's tokenizer and its frozen word table (Dw) through a
trainable Dw -> H map; output logits tied to the same table (H -> Dw, dot with every word vector, plus a
bias), so no vocabulary-sized matrix is trained. The table and X-encoder are copied, not shared, so training
or moving the VLM never touches the VL-JEPA model it came from.

    vlm = TokenVLM.from_vljepa(model)                       # LM ~2x the predictor's trainable parameters
    opt = torch.optim.AdamW(vlm.trainable_parameters(), lr=1e-3)
    vlm.loss(clips, queries, targets).backward()
    vlm.log_likelihood(s_v, query, candidates)               # [B,C] summed token log-probs
    vlm.classify(s_v, query, labels)                          # [B] lowest perplexity
    vlm.generate(clips, queries, max_tokens=12)              # greedy -> list[str]
    vlm.save("checkpoints/tiny-vlm", source="checkpoints/tiny"); TokenVLM.load("checkpoints/tiny-vlm")

Scoring and generation run [visual ; query ; BOS] once per clip into a KV cache and continue from it (as
any production VLM serves): C candidates cost C short continuations, not C full sequences, and the
vocabulary projection runs once per distinct candidate prefix (240 class texts share "the <colour>").
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.cache_utils import DynamicCache

from perception.model.layers import LlamaStack, causal_mask, llama_config
from perception.model.vljepa import WEIGHTS_FILE, CheckpointError, VLJepa, candidate_lists
from perception.model.vlm_checkpoint import (
    VLM_CONFIG,
    VLM_FORMAT,
    VLM_WEIGHTS,
    VLMCheckpointProblem,
    check_vlm_checkpoint,
    file_sha256,
)

if TYPE_CHECKING:
    from perception.model.x_encoder import XEncoder

FROZEN_PREFIXES = ("x_encoder.", "word_table.")  # reloaded from the source VL-JEPA checkpoint, never stored
SCORE_ROWS = 512  # candidate rows per cached continuation pass (bounds the repeated KV cache's memory)
VOCAB_CHUNK = 1024  # prediction states per vocabulary projection (bounds the [n, V] logits)


@dataclass
class VLMOutput:
    loss: torch.Tensor  # scalar: mean cross-entropy over the scored (target) tokens
    labels: torch.Tensor  # [B,L] the token each text position is scored on, -100 where not scored
    tokens: int  # number of scored tokens the loss averages over


@dataclass
class TextBatch:
    ids: torch.Tensor  # [B,L] query ; BOS ; target ; EOS, right-padded
    keep: torch.Tensor  # [B,L] bool, True = real token
    scored: torch.Tensor  # [B,L] bool, True = a target token (or EOS) the LM is scored on


def lm_param_count(
    hidden: int, layers: int, heads: int, intermediate: int, visual_dim: int, word_dim: int, vocab: int
) -> int:
    """Trainable parameters of a TokenVLM with these dims (matches `trainable_parameters`; used to size it)."""
    per_layer = 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden  # q,k,v,o (no bias, kv = heads),
    # SwiGLU MLP (no bias), two RMSNorms
    return (
        (visual_dim * hidden + hidden)  # visual_proj
        + (word_dim * hidden + hidden)  # token_in
        + layers * per_layer
        + hidden  # final norm
        + (hidden * word_dim + word_dim)  # token_out
        + vocab  # logit_bias
    )


class TokenVLM(nn.Module):
    def __init__(
        self,
        x_encoder: XEncoder,
        word_table: nn.Embedding,
        tokenizer,
        hidden: int,
        layers: int,
        heads: int,
        intermediate: int,
        max_query_tokens: int = 32,
        max_target_tokens: int = 32,
        rope_theta: float = 10000.0,
        reference_params: int | None = None,
    ):
        """x_encoder and word_table are deep-copied and frozen; reference_params (the predictor's trainable
        count, set by `from_vljepa`) is only reported by `param_counts`."""
        super().__init__()
        if hidden % heads or (hidden // heads) % 2:
            raise ValueError(f"hidden ({hidden}) must split into {heads} heads of even size (RoPE)")
        self.x_encoder = copy.deepcopy(x_encoder).requires_grad_(False).eval()
        self.word_table = copy.deepcopy(word_table).requires_grad_(False)  # [V,Dw] frozen
        self.tokenizer = tokenizer
        self.max_query_tokens, self.max_target_tokens = max_query_tokens, max_target_tokens
        self.reference_params = reference_params
        self.dims = dict(
            hidden=hidden,
            layers=layers,
            heads=heads,
            intermediate=intermediate,
            max_query_tokens=max_query_tokens,
            max_target_tokens=max_target_tokens,
        )
        tok = tokenizer
        self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
        if self.bos_id is None or self.eos_id is None:
            raise ValueError("the VLM's tokenizer needs a BOS/CLS and an EOS/SEP token")
        dw = word_table.embedding_dim
        self.visual_proj = nn.Linear(x_encoder.out_dim, hidden)  # Dv -> H
        self.token_in = nn.Linear(dw, hidden)  # Dw -> H
        self.stack = LlamaStack(llama_config(hidden, layers, heads, heads, intermediate, rope_theta))
        self.token_out = nn.Linear(hidden, dw)  # H -> Dw, then tied to the word table
        self.logit_bias = nn.Parameter(torch.zeros(word_table.num_embeddings))

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_vljepa(
        cls,
        model: VLJepa,
        hidden: int | None = None,
        layers: int | None = None,
        heads: int | None = None,
        intermediate: int | None = None,
        size_ratio: float = 2.0,
        max_query_tokens: int | None = None,
        max_target_tokens: int | None = None,
    ) -> TokenVLM:
        """A VLM on `model`'s X-encoder (frozen copy) and Y-encoder tokenizer/word table. Unset dims follow
        the predictor (hidden, heads, intermediate/hidden ratio); the free one (layers, else hidden) is
        chosen so the trainable count is closest to size_ratio x the predictor's trainable count."""
        p = model.cfg.predictor
        ref = sum(q.numel() for q in model.predictor.parameters() if q.requires_grad)
        table = model.y_encoder.word_embeddings
        heads = heads or p.heads
        ratio = p.intermediate / p.hidden
        dims = dict(visual_dim=model.x_encoder.out_dim, word_dim=table.embedding_dim, vocab=table.num_embeddings)

        def count(h: int, n: int) -> int:
            return lm_param_count(h, n, heads, intermediate or round(h * ratio), **dims)

        target = size_ratio * ref
        if hidden is None and layers is not None:
            step = 2 * heads  # even head size
            hidden = min(range(step, 8 * p.hidden + 1, step), key=lambda h: abs(count(h, layers) - target))
        hidden = hidden or p.hidden
        if layers is None:
            layers = min(range(1, 65), key=lambda n: abs(count(hidden, n) - target))
        vlm = cls(
            model.x_encoder,
            table,
            model.y_encoder.tokenizer,
            hidden=hidden,
            layers=layers,
            heads=heads,
            intermediate=intermediate or round(hidden * ratio),
            max_query_tokens=max_query_tokens or p.max_query_tokens,
            max_target_tokens=max_target_tokens or model.cfg.y_decoder.max_tokens,
            rope_theta=p.rope_theta,
            reference_params=ref,
        )
        return vlm.to(device=model.device, dtype=model.dtype)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the frozen X-encoder and word table."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_counts(self) -> dict[str, int | float | None]:
        """{"vlm": trainable, "frozen": X-encoder + word table, "predictor": the source predictor's trainable
        count (None if not built by from_vljepa), "ratio": vlm / predictor}."""
        vlm = sum(p.numel() for p in self.trainable_parameters())
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        ref = self.reference_params
        return {"vlm": vlm, "frozen": frozen, "predictor": ref, "ratio": vlm / ref if ref else None}

    def save(self, directory: str | Path, source: str | Path) -> Path:
        """Write vlm.safetensors (the trainable tensors only) and vlm.json (dims, and the VL-JEPA checkpoint
        `source` whose X-encoder and word table this VLM froze: its path relative to `directory` and its
        weights' sha256, so a load never pairs the LM with other visual features)."""
        out, src = Path(directory), Path(source)
        out.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if not k.startswith(FROZEN_PREFIXES)
        }
        save_file(state, str(out / VLM_WEIGHTS), metadata={"format": "pt"})
        meta = {
            "format": VLM_FORMAT,
            "dims": self.dims,
            "source": os.path.relpath(src.resolve(), out.resolve()),
            "source_sha256": file_sha256(src / WEIGHTS_FILE),
            "param_counts": self.param_counts(),
        }
        (out / VLM_CONFIG).write_text(json.dumps(meta, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, dtype: str | None = None) -> TokenVLM:
        """Rebuild from `save`'s directory: the source VL-JEPA checkpoint (checked by hash) gives the frozen
        parts, vlm.safetensors the rest."""
        d = Path(directory)
        try:
            meta, src = check_vlm_checkpoint(d)
        except VLMCheckpointProblem as exc:
            raise CheckpointError(str(exc)) from exc
        jepa = VLJepa.load(src, device=device, dtype=dtype)
        vlm = cls.from_vljepa(jepa, **meta["dims"])
        missing, unexpected = vlm.load_state_dict(load_file(str(d / VLM_WEIGHTS)), strict=False)
        missing = [k for k in missing if not k.startswith(FROZEN_PREFIXES)]
        if missing or unexpected:
            raise CheckpointError(f"{d}: tensors do not match: missing {missing[:8]}, unexpected {unexpected[:8]}")
        return vlm.eval()

    def train(self, mode: bool = True) -> TokenVLM:
        super().train(mode)
        self.x_encoder.eval()  # frozen: deterministic, no dropout / drop-path
        return self

    @property
    def device(self) -> torch.device:
        return self.logit_bias.device

    # ------------------------------------------------------------------------------------ pieces
    def visual_tokens(self, s_v_or_clips: torch.Tensor) -> torch.Tensor:
        """S_V [B,N,Dv] as given, or clips [B,T,C,H,W] / images [B,C,H,W] through the frozen X-encoder."""
        x = s_v_or_clips.to(self.device)
        if x.dim() != 3:
            with torch.no_grad():
                x = self.x_encoder(x)  # [B,N,Dv]
        if x.is_inference() and not torch.is_inference_mode_enabled():
            x = x.clone()  # S_V from encode_video (inference mode) may feed a training step
        return x

    def text_batch(self, queries: Sequence[str], targets: Sequence[str], close: bool = True) -> TextBatch:
        """Per row: query ids (no specials) ; BOS ; target ids ; EOS (close=False: no EOS, for generation),
        packed contiguously from position 0 and right-padded, so a row's positions never depend on padding."""
        rows, scored = [], []
        for q, t in zip(queries, targets, strict=True):
            q_ids = self.tokenizer(q, add_special_tokens=False)["input_ids"][: self.max_query_tokens]
            t_ids = self.tokenizer(t, add_special_tokens=False)["input_ids"][: self.max_target_tokens - 2]
            tail = [*t_ids, self.eos_id] if close else t_ids
            rows.append([*q_ids, self.bos_id, *tail])
            scored.append([False] * (len(q_ids) + 1) + [True] * len(tail))
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        keep = torch.zeros(len(rows), L, dtype=torch.bool)
        score = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, (r, s) in enumerate(zip(rows, scored)):
            ids[i, : len(r)] = torch.tensor(r)
            keep[i, : len(r)] = True
            score[i, : len(s)] = torch.tensor(s)
        dev = self.device
        return TextBatch(ids.to(dev), keep.to(dev), score.to(dev))

    def hidden_states(self, s_v: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """s_v [B,N,Dv], text ids/keep [B,L] -> last-layer states [B,N+L,H] (causal over the whole row)."""
        B, N, _ = s_v.shape
        v = self.visual_proj(s_v.to(self.visual_proj.weight.dtype))  # [B,N,H]
        words = self.word_table(ids)  # [B,L,Dw] frozen
        x = torch.cat([v, self.token_in(words.to(v.dtype))], dim=1)  # [B,N+L,H]
        full_keep = torch.cat([torch.ones(B, N, dtype=torch.bool, device=ids.device), keep.bool()], dim=1)
        return self.stack(x, causal_mask(full_keep, x.dtype))  # [B,N+L,H]

    def vocab_logits(self, h: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., V], tied to the frozen word table."""
        table = self.word_table.weight.to(h.dtype)  # [V,Dw]
        return self.token_out(h) @ table.T + self.logit_bias.to(h.dtype)

    def sequence_logits(self, s_v: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position [B,N+L,V]: position i predicts the token at i+1."""
        return self.vocab_logits(self.hidden_states(s_v, ids, keep))

    def _scored_logits(self, s_v: torch.Tensor, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [T,V], token ids [T]) for the T scored tokens only: the vocabulary projection, the costly
        part with V ~ 30k, runs on those positions alone."""
        N = s_v.shape[1]
        h = self.hidden_states(s_v, text.ids, text.keep)  # [B,N+L,H]
        pred = h[:, N - 1 : -1]  # [B,L,H]: the state before text position j predicts token j
        return self.vocab_logits(pred[text.scored]), text.ids[text.scored]  # [T,V], [T]

    def _rows(self, s_v: torch.Tensor, queries: Sequence[str] | str) -> tuple[torch.Tensor, list[str]]:
        B = s_v.shape[0]
        queries = [queries] if isinstance(queries, str) else list(queries)
        if len(queries) == 1:
            queries = queries * B
        if len(queries) != B:
            raise ValueError(f"got {len(queries)} queries for {B} clips (give 1 or {B})")
        return s_v, queries

    # ------------------------------------------------------------------------------------ training
    def forward(self, s_v_or_clips: torch.Tensor, queries: Sequence[str] | str, targets: Sequence[str]) -> VLMOutput:
        """Teacher-forced next-token cross-entropy on the target tokens (and EOS) only; the query is an
        unscored prefix (it conditions the targets, it is not modelled)."""
        s_v, queries = self._rows(self.visual_tokens(s_v_or_clips), queries)
        text = self.text_batch(queries, list(targets))
        logits, tgt = self._scored_logits(s_v, text)  # [T,V], [T]
        labels = text.ids.masked_fill(~text.scored, -100)  # [B,L]
        return VLMOutput(loss=F.cross_entropy(logits.float(), tgt), labels=labels, tokens=int(tgt.numel()))

    def loss(self, clips: torch.Tensor, queries: Sequence[str] | str, targets: Sequence[str]) -> torch.Tensor:
        """The training entry: scalar mean target-token cross-entropy (clips or precomputed S_V)."""
        return self(clips, queries, targets).loss

    # ------------------------------------------------------------------------------------ cached prefix
    def _ids(self, text: str, limit: int) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][:limit]

    def prefix(self, s_v: torch.Tensor, ids: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
        """s_v [b,N,Dv], ids [b,n] (query ; BOS, no padding) -> (KV cache of the N+n prefix positions, the
        last position's state [b,H], which predicts the first text token)."""
        b, N, _ = s_v.shape
        v = self.visual_proj(s_v.to(self.visual_proj.weight.dtype))  # [b,N,H]
        x = torch.cat([v, self.token_in(self.word_table(ids).to(v.dtype))], dim=1)  # [b,N+n,H]
        keep = torch.ones(b, x.shape[1], dtype=torch.bool, device=x.device)
        cache = DynamicCache()
        h = self.stack(x, causal_mask(keep, x.dtype), cache=cache)  # [b,N+n,H]
        return cache, h[:, -1]

    def extend(self, cache: DynamicCache, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """ids/keep [b,L] (right-padded) after the cached prefix -> states [b,L,H]; appends to `cache`."""
        b, L = ids.shape
        x = self.token_in(self.word_table(ids).to(self.token_in.weight.dtype))  # [b,L,H]
        P = cache.get_seq_length()
        seen = torch.zeros(b, 1, L, P, dtype=x.dtype, device=x.device)  # every prefix key is visible
        return self.stack(x, torch.cat([seen, causal_mask(keep, x.dtype)], dim=-1), cache=cache)  # [b,L,H]

    def _query_groups(self, queries: list[str]) -> dict[int, tuple[list[int], torch.Tensor]]:
        """Rows grouped by prefix length: {n: (row indices, ids [b,n] = query ; BOS)}, so a prefix is never
        padded and every row sits at exactly its training positions."""
        rows = [[*self._ids(q, self.max_query_tokens), self.bos_id] for q in queries]
        groups: dict[int, tuple[list[int], torch.Tensor]] = {}
        for n in sorted({len(r) for r in rows}):
            idx = [i for i, r in enumerate(rows) if len(r) == n]
            groups[n] = (idx, torch.tensor([rows[i] for i in idx], device=self.device))
        return groups

    # ------------------------------------------------------------------------------------ scoring
    @torch.no_grad()
    def token_log_probs(
        self,
        s_v_or_clips: torch.Tensor,
        queries: Sequence[str] | str,
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of log-probs [B,C], scored token counts [B,C]) of each candidate (+ EOS) given visual tokens
        and query. candidates: one list for all rows or one per row (short rows padded: -inf sum, 0 count).
        Equal to scoring each full sequence (tests/model/test_vlm.py checks it against `sequence_logits`)."""
        s_v, queries = self._rows(self.visual_tokens(s_v_or_clips), queries)
        B = s_v.shape[0]
        per_row = candidate_lists(candidates, B)
        C = max(len(c) for c in per_row)
        out_sum = torch.full((B, C), float("-inf"), device=self.device)
        out_n = torch.zeros(B, C, dtype=torch.long, device=self.device)
        limit = self.max_target_tokens - 2
        tokens = {t: [*self._ids(t, limit), self.eos_id] for r in per_row for t in r}  # candidate -> t_1..t_L, EOS
        for _, (idx, ids) in self._query_groups(queries).items():
            cache, h_last = self.prefix(s_v[idx], ids)  # one prefix per clip
            start = 0
            while start < len(idx):  # chunks of clips with at most ~SCORE_ROWS candidate rows
                stop, rows = start, 0
                while stop < len(idx) and (stop == start or rows + len(per_row[idx[stop]]) <= SCORE_ROWS):
                    rows += len(per_row[idx[stop]])
                    stop += 1
                sums, counts = self._score_chunk(cache, h_last, idx, start, stop, per_row, tokens)
                for k in range(start, stop):
                    i = idx[k]
                    n_c = len(per_row[i])
                    out_sum[i, :n_c], out_n[i, :n_c] = sums[k - start][:n_c], counts[k - start][:n_c]
                start = stop
        return out_sum, out_n

    def _score_chunk(
        self,
        cache: DynamicCache,
        h_last: torch.Tensor,
        idx: list[int],
        start: int,
        stop: int,
        per_row: list[list[str]],
        tokens: dict[str, list[int]],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Clips idx[start:stop] of one prefix group: every candidate continued from its clip's cached
        prefix; each distinct (clip, candidate prefix) gets one vocabulary projection."""
        rows = [(k, tokens[t]) for k in range(start, stop) for t in per_row[idx[k]]]  # (clip slot, t_1..EOS)
        L = max(len(t) - 1 for _, t in rows)  # inputs t_1..t_L (EOS is only predicted)
        inp = torch.full((len(rows), max(L, 1)), self.pad_id, dtype=torch.long)
        keep = torch.zeros(len(rows), max(L, 1), dtype=torch.bool)
        for r, (_, t) in enumerate(rows):
            inp[r, : len(t) - 1] = torch.tensor(t[:-1], dtype=torch.long)
            keep[r, : len(t) - 1] = True
        slot = torch.tensor([k for k, _ in rows], device=self.device)
        rep = DynamicCache(ddp_cache_data=[(k_[slot], v_[slot]) for k_, v_, *_ in cache])  # [R,heads,P,hd]
        h = self.extend(rep, inp.to(self.device), keep.to(self.device))  # [R,L,H]
        # the state predicting token j of row r: the prefix's last state (j = 0), else h[r, j-1]
        node_of: dict[tuple, int] = {}
        states: list[tuple[int, int]] = []  # per distinct node: (row, j)
        pair_node, pair_tok, pair_row = [], [], []
        for r, (k, t) in enumerate(rows):
            for j, tok in enumerate(t):
                key = (k, *t[:j])
                if key not in node_of:
                    node_of[key] = len(states)
                    states.append((r, j))
                pair_node.append(node_of[key])
                pair_tok.append(tok)
                pair_row.append(r)
        dev = self.device
        sr = torch.tensor([r for r, _ in states], device=dev)
        sj = torch.tensor([j for _, j in states], device=dev)
        first = h_last[torch.tensor([rows[r][0] for r in sr.tolist()], device=dev)]  # [U,H]
        prev = h[sr, (sj - 1).clamp_min(0)]  # [U,H]
        node_h = torch.where((sj == 0)[:, None], first, prev)  # [U,H]
        pn, pt = torch.tensor(pair_node, device=dev), torch.tensor(pair_tok, device=dev)
        lp = torch.empty(len(pair_node), device=dev)
        for a in range(0, len(states), VOCAB_CHUNK):
            ls = self.vocab_logits(node_h[a : a + VOCAB_CHUNK]).float().log_softmax(-1)  # [c,V]
            sel = (pn >= a) & (pn < a + VOCAB_CHUNK)
            lp[sel] = ls[pn[sel] - a, pt[sel]]
        sums = torch.zeros(len(rows), device=dev).index_add_(0, torch.tensor(pair_row, device=dev), lp)  # [R]
        counts = torch.tensor([len(t) for _, t in rows], device=dev)  # [R]
        out_s, out_c, r0 = [], [], 0
        for k in range(start, stop):
            n_c = len(per_row[idx[k]])
            out_s.append(sums[r0 : r0 + n_c])
            out_c.append(counts[r0 : r0 + n_c])
            r0 += n_c
        return out_s, out_c

    def log_likelihood(
        self,
        s_v_or_clips: torch.Tensor,
        queries: Sequence[str] | str,
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> torch.Tensor:
        """[B,C] log p(candidate + EOS | visual tokens, query), summed over the candidate's tokens."""
        return self.token_log_probs(s_v_or_clips, queries, candidates)[0]

    def perplexity(
        self,
        s_v_or_clips: torch.Tensor,
        queries: Sequence[str] | str,
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> torch.Tensor:
        """[B,C] exp(mean NLL per scored token) (inf for padded candidate slots)."""
        s, n = self.token_log_probs(s_v_or_clips, queries, candidates)
        return torch.exp(-s / n.clamp_min(1))

    def classify(self, s_v_or_clips: torch.Tensor, queries: Sequence[str] | str, labels: Sequence[str]) -> torch.Tensor:
        """[B] index of the lowest-perplexity label, i.e. the highest *mean* per-token log-prob (the paper's
        perplexity protocol): the mean does not favour short labels the way a summed likelihood does."""
        return self.perplexity(s_v_or_clips, queries, labels).argmin(-1)

    def answer(
        self,
        s_v_or_clips: torch.Tensor,
        queries: Sequence[str] | str,
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> torch.Tensor:
        """[B] index of the highest summed-likelihood candidate (VQA: answers are short, often one token,
        where the sum is the answer's probability)."""
        return self.log_likelihood(s_v_or_clips, queries, candidates).argmax(-1)

    # ------------------------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self, s_v_or_clips: torch.Tensor, queries: Sequence[str] | str = "", max_tokens: int | None = None
    ) -> list[str]:
        """Greedy decoding after [visual ; query ; BOS], up to max_tokens new tokens or EOS, one cached step
        per token. Rows are decoded in groups of equal query length (no padding inside a prefix)."""
        return [text for text, _ in self.generate_counted(s_v_or_clips, queries, max_tokens)]

    @torch.no_grad()
    def generate_counted(
        self, s_v_or_clips: torch.Tensor, queries: Sequence[str] | str = "", max_tokens: int | None = None
    ) -> list[tuple[str, int]]:
        """`generate`, with each row's number of generated tokens (EOS included): what a caption cost."""
        max_tokens = max_tokens or self.max_target_tokens - 1
        s_v, queries = self._rows(self.visual_tokens(s_v_or_clips), queries)
        out: list[tuple[str, int]] = [("", 0)] * len(queries)
        for _, (idx, ids) in self._query_groups(queries).items():
            cache, h = self.prefix(s_v[idx], ids)  # [b,H]
            done = torch.zeros(len(idx), dtype=torch.bool, device=self.device)
            steps = torch.zeros(len(idx), dtype=torch.long, device=self.device)
            made: list[torch.Tensor] = []
            for _ in range(max_tokens):
                nxt = self.vocab_logits(h).argmax(-1)  # [b]
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                steps += (~done).long()
                made.append(nxt)
                done |= nxt == self.eos_id
                if bool(done.all()):
                    break
                h = self.extend(cache, nxt[:, None], torch.ones_like(nxt[:, None], dtype=torch.bool))[:, -1]
            seqs = torch.stack(made, dim=1).tolist()  # [b,steps]
            for i, row, n in zip(idx, seqs, steps.tolist()):
                if self.eos_id in row:
                    row = row[: row.index(self.eos_id)]
                out[i] = (self.tokenizer.decode(row, skip_special_tokens=True).strip(), int(n))
        return out
