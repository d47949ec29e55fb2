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
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from perception.model.layers import LlamaStack, causal_mask, llama_config
from perception.model.vljepa import candidate_lists

if TYPE_CHECKING:
    from perception.model.vljepa import VLJepa
    from perception.model.x_encoder import XEncoder


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

    # ------------------------------------------------------------------------------------ scoring
    @torch.no_grad()
    def token_log_probs(
        self,
        s_v_or_clips: torch.Tensor,
        queries: Sequence[str] | str,
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of log-probs [B,C], scored token counts [B,C]) of each candidate (+ EOS) given visual tokens
        and query. candidates: one list for all rows or one per row (short rows padded: -inf sum, 0 count)."""
        s_v, queries = self._rows(self.visual_tokens(s_v_or_clips), queries)
        B = s_v.shape[0]
        per_row = candidate_lists(candidates, B)
        C = max(len(c) for c in per_row)
        rows = [(i, j) for i in range(B) for j in range(len(per_row[i]))]
        text = self.text_batch([queries[i] for i, _ in rows], [per_row[i][j] for i, j in rows])
        sv = s_v[torch.tensor([i for i, _ in rows], device=s_v.device)]  # [R,N,Dv] one row per candidate
        logits, tgt = self._scored_logits(sv, text)  # [T,V], [T]
        lp = logits.float().log_softmax(-1).gather(-1, tgt[:, None])[:, 0]  # [T]
        row_of = torch.arange(len(rows), device=lp.device)[:, None].expand_as(text.scored)[text.scored]  # [T]
        sums = torch.zeros(len(rows), device=lp.device).index_add_(0, row_of, lp)  # [R]
        counts = text.scored.sum(1)  # [R]
        out_sum = torch.full((B, C), float("-inf"), device=lp.device)
        out_n = torch.zeros(B, C, dtype=torch.long, device=lp.device)
        ii = torch.tensor([i for i, _ in rows], device=lp.device)
        jj = torch.tensor([j for _, j in rows], device=lp.device)
        out_sum[ii, jj], out_n[ii, jj] = sums, counts
        return out_sum, out_n

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
        """Greedy decoding after [visual ; query ; BOS], up to max_tokens new tokens or EOS. Rows are decoded
        in groups of equal query length so every row sits at exactly its training positions (no padding
        between the prefix and the generated text)."""
        max_tokens = max_tokens or self.max_target_tokens - 1
        s_v, queries = self._rows(self.visual_tokens(s_v_or_clips), queries)
        text = self.text_batch(queries, [""] * len(queries), close=False)  # [B,Lq+1] query ; BOS
        lengths = text.keep.sum(1).tolist()
        out: list[str] = [""] * len(queries)
        for n in sorted(set(lengths)):
            idx = [i for i, m in enumerate(lengths) if m == n]
            sel = torch.tensor(idx, device=s_v.device)
            sv, seqs = s_v[sel], text.ids[sel, :n]  # [b,N,Dv], [b,n]
            done = torch.zeros(len(idx), dtype=torch.bool, device=s_v.device)
            for _ in range(max_tokens):
                h = self.hidden_states(sv, seqs, torch.ones_like(seqs, dtype=torch.bool))[:, -1]  # [b,H]
                nxt = self.vocab_logits(h).argmax(-1)  # [b]
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                seqs = torch.cat([seqs, nxt[:, None]], dim=1)
                done |= nxt == self.eos_id
                if bool(done.all()):
                    break
            for i, row in zip(idx, seqs[:, n:].tolist()):
                if self.eos_id in row:
                    row = row[: row.index(self.eos_id)]
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
        return out
