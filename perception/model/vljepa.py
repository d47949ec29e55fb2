"""VLJepa: the four parts wired together, the inference API, the training entry points, checkpoints.

Inference (all under torch.inference_mode, device/dtype from the config; shared-space outputs are
L2-normalised):
    model = VLJepa.load("checkpoints/tiny")                       # or VLJepa.from_config(cfg)
    s_v = model.encode_video(clips)                               # [B,T,C,H,W] -> S_V [B,N,Dv]
    s_hat = model.predict(s_v, ["what is happening?"])            # -> S^_Y [B,D]; reuse s_v per query
    model.classify(s_hat, ["a circle moves left", ...])           # nearest label embedding
    model.retrieve("a red square", bank)                          # rank a bank [M,D] of S^_Y
    model.answer(s_hat, ["red", "green", "blue"])                 # nearest candidate answer
    model.decode(s_hat)                                           # Y-decoder -> list[str]

Training (see each docstring):
    out = model(clips=..., queries=[...], targets=[...])          # VLJepaOutput: pred, target, loss
    opt = torch.optim.AdamW(model.param_groups(lr=3e-4))          # Y-encoder LR multiplier inside
    dec = model.decoder_loss(texts)                               # Y-decoder teacher-forced LM loss
    model.save(dir); VLJepa.load(dir)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer

from bus.logs import get_logger
from perception.model.checkpoint_config import (
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    CheckpointError,
    check_weights_file,
    read_checkpoint_meta,
)
from perception.model.config import ModelSection, VLJepaConfig, preset_config
from perception.model.loss import LossOutput, groups_from_texts, info_nce
from perception.model.phrase_bank import Description, PhraseBank, read_phrases
from perception.model.predictor import Predictor
from perception.model.weights import resolve_source
from perception.model.x_encoder import XEncoder
from perception.model.y_decoder import DecoderOutput, YDecoder
from perception.model.y_encoder import TokenBatch, YEncoder, ensure_pad_token, tokenize

log = get_logger("model")

WEIGHTS_FILE = "model.safetensors"


@dataclass
class VLJepaOutput:
    pred: torch.Tensor  # [B, D] S^_Y from the predictor (not normalised; the loss normalises)
    target: torch.Tensor | None  # [B, D] S_Y from the Y-encoder
    loss: LossOutput | None  # bidirectional InfoNCE when targets were given
    s_v: torch.Tensor  # [B, N, Dv] the visual tokens used (reusable)


@dataclass
class Classification:
    scores: torch.Tensor  # [B, L] cosine similarity to each label
    indices: torch.Tensor  # [B] best label per row
    labels: list[str]  # the best label per row


@dataclass
class Ranking:
    indices: torch.Tensor  # [M] bank rows, most similar first
    scores: torch.Tensor  # [M] their cosine similarity


@dataclass
class Answers:
    choices: list[str]  # best candidate per row
    indices: torch.Tensor  # [B]
    scores: torch.Tensor  # [B, C] (rows padded with -inf when candidate lists differ in length)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def candidate_lists(candidates: Sequence[str] | Sequence[Sequence[str]], rows: int) -> list[list[str]]:
    """One list of candidate texts per row: a flat list is shared by every row."""
    per_row = (
        [list(candidates)] * rows if candidates and isinstance(candidates[0], str) else [list(c) for c in candidates]
    )
    if len(per_row) != rows:
        raise ValueError(f"got {len(per_row)} candidate lists for {rows} rows")
    return per_row


class VLJepa(nn.Module):
    def __init__(self, cfg: VLJepaConfig, load_weights: bool | set[str] = True):
        """Build every part. load_weights: True = load all configured pretrained weights, False = none
        (architecture only), or the set of part names to load (what `load` uses for external parts)."""
        super().__init__()
        want = (lambda part: load_weights) if isinstance(load_weights, bool) else (lambda part: part in load_weights)
        self.cfg = cfg
        self.y_encoder = YEncoder(cfg.y_encoder, cfg.embed_dim, load_weights=want("y_encoder"))
        table = self.y_encoder.word_embeddings
        self.x_encoder = XEncoder(cfg.x_encoder, load_weights=want("x_encoder"))
        self.query_tokenizer = self._query_tokenizer()
        vocab = len(self.query_tokenizer) if self.query_tokenizer is not None else table.num_embeddings
        self.predictor = Predictor(
            cfg.predictor,
            self.x_encoder.out_dim,
            cfg.embed_dim,
            vocab,
            shared_table=table,
            load_weights=want("predictor"),
        )
        self.y_decoder = YDecoder(
            cfg.y_decoder,
            cfg.embed_dim,
            tokenizer=self.y_encoder.tokenizer,
            shared_table=table,
            load_weights=want("y_decoder"),
        )
        # log(temperature): learnable (CLIP-style) or a fixed buffer
        log_t = torch.tensor(math.log(cfg.temperature))
        if cfg.learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._phrase_bank: PhraseBank | None = None  # built on the first retrieval caption

    def _query_tokenizer(self):
        p = self.cfg.predictor
        source = p.tokenizer or (p.weights if p.token_embeddings == "own" else None)
        if source is None:
            return self.y_encoder.tokenizer
        try:
            return ensure_pad_token(
                AutoTokenizer.from_pretrained(str(resolve_source(source, "predictor tokenizer")), local_files_only=True)
            )
        except FileNotFoundError:
            if p.hf_config is None:
                raise
            return None  # architecture only

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: VLJepaConfig | ModelSection | str | None = None) -> VLJepa:
        """Build from a config (or YAML model section, or preset name), load pretrained parts, move to the
        configured device/dtype, eval mode. A ModelSection with `checkpoint` set loads that checkpoint."""
        if isinstance(cfg, ModelSection):
            if cfg.checkpoint:
                return cls.load(cfg.checkpoint, device=cfg.device, dtype=cfg.dtype)
            cfg = cfg.to_model_config()
        elif cfg is None or isinstance(cfg, str):
            cfg = preset_config(cfg or "tiny")
        model = cls(cfg)
        return model._place(cfg.device, cfg.dtype)

    def _place(self, device: str, dtype: str) -> VLJepa:
        dev = resolve_device(device)
        self.to(device=dev, dtype=resolve_dtype(dtype, dev))
        self.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.log_temperature.device

    @property
    def dtype(self) -> torch.dtype:
        return self.predictor.head.weight.dtype

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=1e-3, max=1.0)

    def train(self, mode: bool = True) -> VLJepa:
        self._text_cache.clear()  # cached label embeddings go stale as soon as weights can change
        self._phrase_bank = None
        return super().train(mode)

    # ------------------------------------------------------------------------------------ tokenization
    def tokenize_queries(self, queries: Sequence[str]) -> TokenBatch:
        if self.query_tokenizer is None:
            raise FileNotFoundError("predictor: no tokenizer available for queries")
        p = self.cfg.predictor
        return tokenize(self.query_tokenizer, list(queries), p.max_query_tokens, p.query_padding)

    def tokenize_targets(self, texts: Sequence[str]) -> TokenBatch:
        return self.y_encoder.tokenize(list(texts))

    # ------------------------------------------------------------------------------------ training
    def forward(
        self,
        clips: torch.Tensor | None = None,
        queries: Sequence[str] | TokenBatch = ("",),
        targets: Sequence[str] | TokenBatch | None = None,
        s_v: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> VLJepaOutput:
        """The training forward: predicted and target embeddings, and InfoNCE when targets are given.

        clips [B,T,C,H,W] (or precomputed s_v [B,N,Dv], e.g. cached from a frozen X-encoder); queries: one
        per clip, or a single one for all (stage 1's neutral query is ""); targets: B texts (equal texts are
        positives for each other) or a TokenBatch with explicit `groups` [B].
        """
        if s_v is None:
            if clips is None:
                raise ValueError("forward needs clips or s_v")
            s_v = self.x_encoder(clips.to(self.device))  # [B,N,Dv]
        B = s_v.shape[0]
        q = self._query_batch(queries, B)
        pred = self.predictor(s_v, q.ids, q.mask).embedding  # [B,D]
        if targets is None:
            return VLJepaOutput(pred=pred, target=None, loss=None, s_v=s_v)
        if not isinstance(targets, TokenBatch):
            if len(targets) != B:
                raise ValueError(f"got {len(targets)} target texts for {B} clips")
            groups = groups_from_texts(list(targets)) if groups is None else groups
            target = self.y_encoder.embed_texts(list(targets), self.device)  # [B,D]
        else:
            target = self.y_encoder(targets.to(self.device))  # [B,D]
        loss = info_nce(pred, target, self.temperature, groups)
        # ln(B) is chance level; spread -> 1.0 means the predictions collapsed (both already host floats)
        log.debug("infonce", batch=B, ln_b=round(loss.baseline, 4), spread=round(loss.spread, 4))
        return VLJepaOutput(pred=pred, target=target, loss=loss, s_v=s_v)

    def _query_batch(self, queries: Sequence[str] | str | TokenBatch, B: int) -> TokenBatch:
        if isinstance(queries, TokenBatch):
            q = queries
        else:
            queries = [queries] if isinstance(queries, str) else list(queries)
            if len(queries) == 1:
                queries = queries * B
            if len(queries) != B:
                raise ValueError(f"got {len(queries)} queries for {B} clips (give 1 or {B})")
            q = self.tokenize_queries(queries)
        if q.ids.shape[0] == 1 and B > 1:
            q = TokenBatch(q.ids.expand(B, -1), q.mask.expand(B, -1))
        return q.to(self.device)

    def param_groups(self, lr: float, weight_decay: float = 0.05) -> list[dict[str, Any]]:
        """AdamW groups over trainable parameters. The Y-encoder backbone gets lr * y_encoder.lr_mult
        (paper: 0.05), its head lr * y_encoder.head_lr_mult; biases, norms and the temperature get no
        weight decay. Each group has a "name"."""
        yc = self.cfg.y_encoder
        rates = {"y_encoder": yc.lr_mult, "y_head": yc.head_lr_mult, "main": 1.0}
        groups: dict[str, dict[str, Any]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            part = (
                "y_encoder"
                if name.startswith("y_encoder.backbone.")
                else "y_head"
                if name.startswith("y_encoder.head.") and yc.head_lr_mult != 1.0
                else "main"
            )
            decay = p.dim() >= 2 and "norm" not in name
            key = f"{part}_{'decay' if decay else 'no_decay'}"
            g = groups.setdefault(
                key, {"name": key, "params": [], "lr": lr * rates[part], "weight_decay": weight_decay if decay else 0.0}
            )
            g["params"].append(p)
        return list(groups.values())

    def decoder_loss(self, texts: Sequence[str], embeddings: torch.Tensor | None = None) -> DecoderOutput:
        """Y-decoder training forward: teacher-forced LM loss of `texts` given embeddings [B,D] (default:
        the texts' own L2-normalised Y-encoder embeddings, computed without gradient)."""
        if embeddings is None:
            with torch.no_grad():
                embeddings = F.normalize(self.y_encoder(self.tokenize_targets(texts).to(self.device)), dim=-1)
        return self.y_decoder(embeddings, self.y_decoder.tokenize(list(texts)).to(self.device))

    # ------------------------------------------------------------------------------------ inference
    @torch.inference_mode()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """clips [B,T,C,H,W] or images [B,C,H,W], uint8 or float in [0,1] -> S_V [B,N,Dv]."""
        return self.x_encoder(clips.to(self.device))

    @torch.inference_mode()
    def predict(self, s_v: torch.Tensor, queries: Sequence[str] | str | TokenBatch = "") -> torch.Tensor:
        """S_V [B,N,Dv] + queries -> L2-normalised S^_Y. One query: applied to every clip ([B,D]); B queries:
        paired ([B,D]); B == 1 and Q queries: the one S_V answers each query ([Q,D])."""
        n_q = (
            queries.ids.shape[0]
            if isinstance(queries, TokenBatch)
            else (1 if isinstance(queries, str) else len(queries))
        )
        if s_v.shape[0] == 1 and n_q > 1:
            s_v = s_v.expand(n_q, -1, -1)  # [Q,N,Dv] no re-encoding
        q = self._query_batch(queries, s_v.shape[0])
        return F.normalize(self.predictor(s_v, q.ids, q.mask).embedding.float(), dim=-1)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], cache: bool = True) -> torch.Tensor:
        """texts -> L2-normalised S_Y [B,D]. With cache=True each text is embedded once (fixed label sets);
        the cache is cleared when the model enters training mode or loads weights."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("embed_text needs at least one text")
        todo = [t for t in dict.fromkeys(texts) if not (cache and t in self._text_cache)]
        fresh: dict[str, torch.Tensor] = {}
        if todo:
            emb = F.normalize(self.y_encoder(self.tokenize_targets(todo).to(self.device)).float(), dim=-1)
            fresh = dict(zip(todo, emb))
            if cache:
                self._text_cache.update(fresh)
        return torch.stack([fresh[t] if t in fresh else self._text_cache[t] for t in texts])

    @torch.inference_mode()
    def classify(self, s_hat: torch.Tensor, labels: Sequence[str]) -> Classification:
        """Open-vocabulary classification: nearest label embedding (cosine) for each row of S^_Y [B,D]."""
        scores = F.normalize(s_hat.float(), dim=-1) @ self.embed_text(labels).T  # [B,L]
        idx = scores.argmax(-1)
        return Classification(scores=scores, indices=idx, labels=[labels[i] for i in idx.tolist()])

    @torch.inference_mode()
    def retrieve(self, text: str, bank: torch.Tensor) -> Ranking:
        """Text-to-video retrieval: rank a bank of S^_Y [M,D] by cosine to the text's S_Y."""
        scores = F.normalize(bank.float().to(self.device), dim=-1) @ self.embed_text([text])[0]  # [M]
        order = scores.argsort(descending=True)
        return Ranking(indices=order, scores=scores[order])

    @torch.inference_mode()
    def answer(self, s_hat: torch.Tensor, candidates: Sequence[str] | Sequence[Sequence[str]]) -> Answers:
        """Discriminative VQA: the candidate answer nearest each row of S^_Y [B,D]. candidates: one list
        shared by all rows, or one list per row."""
        B = s_hat.shape[0]
        per_row = candidate_lists(candidates, B)
        C = max(len(c) for c in per_row)
        scores = torch.full((B, C), float("-inf"), device=self.device)
        z = F.normalize(s_hat.float(), dim=-1)
        for i, cands in enumerate(per_row):
            scores[i, : len(cands)] = self.embed_text(cands) @ z[i]
        idx = scores.argmax(-1)
        return Answers(choices=[per_row[i][j] for i, j in enumerate(idx.tolist())], indices=idx, scores=scores)

    @torch.inference_mode()
    def decode(self, s_hat: torch.Tensor, beams: int = 1, max_tokens: int | None = None) -> list[str]:
        """Y-decoder: S^_Y [B,D] -> one text per row (greedy, or beam search with beams > 1). A model without
        a trained decoder (y_decoder.kind "retrieval") answers with the nearest phrase of its phrase bank."""
        return [d.text for d in self.describe(s_hat, beams=beams, max_tokens=max_tokens)]

    @property
    def captions_by_retrieval(self) -> bool:
        """True when text comes from a phrase bank (no trained Y-decoder), not from a decoder."""
        return self.cfg.y_decoder.kind == "retrieval"

    def set_phrase_banks(self, paths: Sequence[str | Path]) -> None:
        """Use these phrase files (replacing the configured ones) for captions by retrieval."""
        self.cfg.y_decoder.phrase_banks = [str(p) for p in paths]
        self._phrase_bank = None

    @torch.inference_mode()
    def describe(self, s_hat: torch.Tensor, beams: int = 1, max_tokens: int | None = None) -> list[Description]:
        """S^_Y [B,D] -> one Description per row: decoded text, or (no trained decoder) the nearest phrase of
        the phrase bank with its cosine, marked retrieved."""
        if self.captions_by_retrieval:
            if getattr(self, "_phrase_bank", None) is None:
                phrases = read_phrases(self.cfg.y_decoder.phrase_banks)
                self._phrase_bank = PhraseBank(phrases, lambda batch: self.embed_text(batch, cache=False))
            return self._phrase_bank.describe(s_hat)
        z = F.normalize(s_hat.float(), dim=-1).to(self.device, self.dtype)
        texts = self.y_decoder.generate(z, max_tokens=max_tokens, beams=beams)
        return [Description(text=t, retrieved=False) for t in texts]

    # ------------------------------------------------------------------------------------ checkpoints
    def external_parts(self) -> dict[str, str]:
        """Parts whose weights are frozen and come from a pretrained source: not stored in checkpoints,
        reloaded from that source. Maps state-dict prefix -> source."""
        c = self.cfg
        ext: dict[str, str] = {}
        if c.x_encoder.frozen and c.x_encoder.weights:
            ext["x_encoder.backbone."] = c.x_encoder.weights
        if c.y_encoder.frozen:
            ext["y_encoder.backbone."] = c.y_encoder.source
        table = self.predictor.query_embed.table
        if table is not None and not table.weight.requires_grad and c.predictor.weights:
            ext["predictor.query_embed.table."] = c.predictor.weights
        if c.y_decoder.kind == "hf" and c.y_decoder.frozen:
            ext["y_decoder.lm."] = c.y_decoder.weights or ""
        return ext

    def save(self, directory: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write model.safetensors (every stored tensor) and config.json (the full config, the transformers
        configs of pretrained parts, and which prefixes are reloaded from which source). `state`: a full
        state dict gathered elsewhere (an FSDP-sharded model's), instead of this module's own."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        ext = self.external_parts()
        state = {
            k: v.detach().contiguous().cpu()
            for k, v in (self.state_dict() if state is None else state).items()
            if not any(k.startswith(p) for p in ext)
        }
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = {"format": CHECKPOINT_FORMAT, "model": self.cfg.to_dict(), "external": ext, "stored_tensors": len(state)}
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        log.info(
            "checkpoint saved",
            dir=str(out),
            tensors=len(state),
            mb=round(sum(v.numel() * v.element_size() for v in state.values()) / 1e6, 2),
        )
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, dtype: str | None = None) -> VLJepa:
        """Rebuild from a directory written by `save`, with no other input (external frozen parts are
        reloaded from the sources the config names)."""
        d = Path(directory)
        if not (d / CONFIG_FILE).exists() or not (d / WEIGHTS_FILE).exists():
            raise CheckpointError(f"{d} is not a VL-JEPA checkpoint: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
        cfg, ext = read_checkpoint_meta(d)  # data: bounded, validated, no package outside PACKAGED_SOURCES
        parts = {p.split(".")[0] for p in ext}
        if "predictor.query_embed.table." in ext:
            parts.add("predictor")
        check_weights_file(d / WEIGHTS_FILE)  # the header against the file, before any tensor is made
        model = cls(cfg, load_weights=parts)
        try:
            state = load_file(str(d / WEIGHTS_FILE))
            missing, unexpected = model.load_state_dict(state, strict=False)
        except (SafetensorError, RuntimeError, ValueError, OSError) as exc:  # safetensors' errors, size mismatches
            raise CheckpointError(f"{d}: weights do not load: {' '.join(str(exc).split())[:300]}") from None
        missing = [k for k in missing if not any(k.startswith(p) for p in ext)]
        if missing or unexpected:
            raise CheckpointError(
                f"{d}: tensors do not match the config: missing {missing[:8]}, unexpected {unexpected[:8]}"
            )
        model._text_cache.clear()
        model._phrase_bank = None
        return model._place(device or cfg.device, dtype or cfg.dtype)

    # ------------------------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """{part: {"total": n, "trainable": n}} for each part and "all"; shared tables count once (Y-encoder)."""
        out: dict[str, dict[str, int]] = {}
        for part in ("x_encoder", "predictor", "y_encoder", "y_decoder"):
            ps = list(getattr(self, part).parameters())
            out[part] = {
                "total": sum(p.numel() for p in ps),
                "trainable": sum(p.numel() for p in ps if p.requires_grad),
            }
        ps = list(self.parameters())
        out["all"] = {"total": sum(p.numel() for p in ps), "trainable": sum(p.numel() for p in ps if p.requires_grad)}
        return out
