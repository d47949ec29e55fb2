"""Y-decoder: an embedding in the shared space -> text, only when text is needed.

The embedding is projected to K prefix vectors; a causal transformer continues from them. It is trained
on (Y-encoder embedding of a text -> that text) with teacher forcing, so it reads any predicted S^_Y.

kind="builtin": small Llama layers. Its token embeddings are the Y-encoder's frozen word-embedding table
through a trainable linear map, and its output logits are tied to the same table (h -> Dw, then dot with
every word vector), so no vocabulary-sized matrix is stored in the checkpoint.
kind="hf": any transformers causal LM (its own tokenizer and embeddings) behind the same prefix interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from perception.model.config import YDecoderConfig
from perception.model.layers import LlamaStack, causal_mask, llama_config
from perception.model.weights import read_hf_config, resolve_source
from perception.model.y_encoder import TokenBatch, config_from_dict


@dataclass
class DecoderOutput:
    loss: torch.Tensor  # scalar: mean token cross-entropy over real target tokens
    logits: torch.Tensor  # [B, L, V] at the text positions
    tokens: int  # number of target tokens the loss averages over


class YDecoder(nn.Module):
    def __init__(
        self,
        cfg: YDecoderConfig,
        embed_dim: int,
        tokenizer=None,
        shared_table: nn.Embedding | None = None,
        load_weights: bool = True,
    ):
        super().__init__()
        self.cfg = cfg
        self._shared: list[nn.Embedding] = []
        self.tokenizer = tokenizer
        self.bos_id = self.eos_id = self.pad_id = None
        if cfg.kind == "retrieval":
            return  # no trained decoder, no parameters: VLJepa.decode ranks a phrase bank instead
        if cfg.kind == "hf":
            if not cfg.weights:
                raise ValueError("y_decoder.kind='hf' needs y_decoder.weights (a local causal LM directory)")
            path = resolve_source(cfg.weights, "y_decoder")
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            if load_weights:
                cfg.hf_config = read_hf_config(path)
                self.lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
            else:
                self.lm = AutoModelForCausalLM.from_config(config_from_dict(cfg.hf_config))
            if cfg.frozen:
                self.lm.requires_grad_(False)
            hidden = self.lm.config.hidden_size
        else:
            if shared_table is None:
                raise ValueError("the builtin Y-decoder needs the Y-encoder's word embeddings")
            self.tokenizer = tokenizer
            self._shared = [shared_table]  # owned by the Y-encoder; not registered here
            hidden = cfg.hidden
            hf = llama_config(cfg.hidden, cfg.layers, cfg.heads, cfg.heads, cfg.intermediate, 10000.0)
            dw = shared_table.embedding_dim
            self.token_in = nn.Linear(dw, hidden)  # Dw -> H
            self.stack = LlamaStack(hf)
            self.token_out = nn.Linear(hidden, dw)  # H -> Dw, then tied to the word table
            self.logit_bias = nn.Parameter(torch.zeros(shared_table.num_embeddings))
        self.prefix = nn.Linear(embed_dim, cfg.prefix_tokens * hidden)  # D -> K*H
        tok = self.tokenizer  # None: architecture only (meta-device counts)
        if tok is not None:
            self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
            self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
            if self.bos_id is None or self.eos_id is None:
                raise ValueError("the Y-decoder's tokenizer needs a BOS/CLS and an EOS/SEP token")

    # ------------------------------------------------------------------------------------------ pieces
    def tokenize(self, texts: list[str]) -> TokenBatch:
        """[BOS] text [EOS], right-padded to the longest, truncated to max_tokens."""
        rows = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"][: self.cfg.max_tokens - 2]
            rows.append([self.bos_id, *ids, self.eos_id])
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return TokenBatch(ids, mask)

    def _embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if self.cfg.kind == "hf":
            return self.lm.get_input_embeddings()(ids)  # [B,L,H]
        with torch.no_grad():
            words = self._shared[0](ids)  # [B,L,Dw] frozen
        return self.token_in(words.to(self.token_in.weight.dtype))  # [B,L,H]

    def _run(
        self, embedding: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor, last_only: bool = False
    ) -> torch.Tensor:
        """embedding [B,D], ids/keep [B,L] -> logits [B,L,V] for the token positions (next-token);
        last_only: logits of the last position only, [B,1,V] (generation)."""
        B, L = ids.shape
        K = self.cfg.prefix_tokens
        tok = self._embed_tokens(ids)  # [B,L,H]
        prefix = self.prefix(embedding.to(tok.dtype)).view(B, K, -1)  # [B,K,H]
        x = torch.cat([prefix, tok], dim=1)  # [B,K+L,H]
        full_keep = torch.cat([torch.ones(B, K, dtype=torch.bool, device=ids.device), keep.bool()], dim=1)
        if self.cfg.kind == "hf":
            logits = self.lm(inputs_embeds=x, attention_mask=full_keep.long()).logits  # [B,K+L,V]
        else:
            h = self.stack(x, causal_mask(full_keep, x.dtype))  # [B,K+L,H]
            if last_only:
                h = h[:, -1:]  # [B,1,H]: skip the vocabulary projection everywhere else
            table = self._shared[0].weight.to(h.dtype)  # [V,Dw]
            logits = self.token_out(h) @ table.T + self.logit_bias.to(h.dtype)  # [B,K+L,V]
        return logits[:, -1:] if last_only else logits[:, K:]  # [B,L,V]: position i predicts token i+1

    # ------------------------------------------------------------------------------------------ training
    def forward(self, embedding: torch.Tensor, targets: TokenBatch) -> DecoderOutput:
        """Teacher-forced LM loss: embedding [B,D] (L2-normalised S_Y) and tokenized texts [B,L]."""
        ids, keep = targets.ids, targets.mask
        logits = self._run(embedding, ids[:, :-1], keep[:, :-1])  # [B,L-1,V]
        tgt = ids[:, 1:].masked_fill(keep[:, 1:] == 0, -100)  # [B,L-1]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        return DecoderOutput(loss=loss, logits=logits, tokens=int((tgt != -100).sum()))

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, embedding: torch.Tensor, max_tokens: int | None = None, beams: int = 1) -> list[str]:
        """Greedy (beams=1) or beam search from embedding [B,D]; returns one string per row."""
        max_tokens = max_tokens or self.cfg.max_tokens
        B = embedding.shape[0]
        dev = embedding.device
        k = max(1, beams)
        emb = embedding.repeat_interleave(k, dim=0)  # [B*k,D]
        seqs = torch.full((B * k, 1), self.bos_id, dtype=torch.long, device=dev)  # [B*k,1]
        scores = torch.zeros(B, k, device=dev)
        scores[:, 1:] = float("-inf")  # all beams start identical: expand from the first only
        done = torch.zeros(B * k, dtype=torch.bool, device=dev)
        for _ in range(max_tokens - 1):
            logp = self._run(emb, seqs, torch.ones_like(seqs), last_only=True)[:, -1].float().log_softmax(-1)  # [B*k,V]
            V = logp.shape[-1]
            # a finished beam only extends with PAD at no cost
            logp = torch.where(done[:, None], torch.full_like(logp, float("-inf")), logp)
            logp[done, self.pad_id] = 0.0
            cand = (scores.view(B * k, 1) + logp).view(B, k * V)  # [B,k*V]
            top, idx = cand.topk(k, dim=-1)  # [B,k]
            beam_src = idx // V + torch.arange(B, device=dev)[:, None] * k  # [B,k] rows in seqs
            tok = idx % V  # [B,k]
            seqs = torch.cat([seqs[beam_src.view(-1)], tok.view(-1, 1)], dim=1)  # [B*k,t+1]
            done = done[beam_src.view(-1)] | (tok.view(-1) == self.eos_id)
            scores = top
            if bool(done.all()):
                break
        best = scores.argmax(-1) + torch.arange(B, device=dev) * k  # [B]
        out = []
        for row in seqs[best].tolist():
            row = row[1:]
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            out.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return out
