"""A Y-decoder from text alone: `perception train --stage decoder --checkpoint CKPT --texts FILE`.

A checkpoint trained only contrastively (an imported open-vljepa one has no decoder and captions by
retrieval) gets a decoder without any video: each text of a corpus is embedded by the checkpoint's own
Y-encoder (frozen), and the decoder learns (S_Y of the text -> the text), teacher forced. The service decodes
predicted S^_Y, which sit near but not on the text embeddings, so each embedding is jittered
(`embedding_noise`, relative to its unit norm) before decoding. Everything but the decoder stays frozen and
the checkpoint is written again with the decoder in it (y_decoder.kind "builtin").
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from bus.logs import get_logger
from perception.config import ConfigError
from perception.train.config import TextDecoderConfig

log = get_logger("train.text_decoder")
MAX_TEXT_CHARS = 500


def read_texts(path: str | Path, limit: int) -> list[str]:
    """Non-empty lines of a UTF-8 file, each once, at most `limit`; ConfigError when there are none."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--texts {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    texts = list(dict.fromkeys(t.strip()[:MAX_TEXT_CHARS] for t in lines if t.strip()))[:limit]
    if len(texts) < 2:
        raise ConfigError(f"--texts {path}: needs at least 2 distinct non-empty lines, found {len(texts)}")
    return texts


def attach_decoder(model, cfg: TextDecoderConfig) -> None:
    """Give a model without a trained decoder a fresh builtin one (sizes from cfg.decoder)."""
    import dataclasses

    from perception.model.y_decoder import YDecoder

    if model.cfg.y_decoder.kind != "retrieval":
        return
    dec_cfg = dataclasses.replace(model.cfg.y_decoder, **cfg.decoder.model_dump(), kind="builtin")
    model.cfg.y_decoder = dec_cfg
    model.y_decoder = YDecoder(
        dec_cfg, model.cfg.embed_dim, tokenizer=model.y_encoder.tokenizer, shared_table=model.y_encoder.word_embeddings
    ).to(device=model.device, dtype=model.dtype)


def train_text_decoder(checkpoint: str | Path, texts_file: str | Path, out: str | Path, cfg: TextDecoderConfig) -> dict:
    """Train the checkpoint's Y-decoder on `texts_file` and save the checkpoint with it to `out`."""
    import torch

    before = torch.get_num_threads()
    try:
        return _train(checkpoint, texts_file, out, cfg)
    finally:
        torch.set_num_threads(before)  # cfg.threads is this run's, not the calling process's


def _train(checkpoint: str | Path, texts_file: str | Path, out: str | Path, cfg: TextDecoderConfig) -> dict:
    import torch
    import torch.nn.functional as F

    from perception.model import VLJepa
    from perception.train.schedule import cosine_lr

    texts = read_texts(texts_file, cfg.max_texts)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = VLJepa.load(checkpoint, device=cfg.device, dtype=cfg.dtype)
    attach_decoder(model, cfg)
    model.requires_grad_(False)
    model.eval()
    model.y_decoder.requires_grad_(True)
    model.y_decoder.train()
    if model.cfg.y_decoder.kind == "hf" and model.cfg.y_decoder.frozen:
        model.y_decoder.lm.requires_grad_(False)
    params = [p for p in model.y_decoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    t0 = time.monotonic()
    losses: list[float] = []
    step = 0
    for step in range(cfg.steps):
        spent = (time.monotonic() - t0) / cfg.time_budget_s if cfg.time_budget_s else None
        if spent is not None and spent >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio, progress=spent)
        batch = rng.sample(texts, min(cfg.batch_size, len(texts)))
        with torch.no_grad():
            z = F.normalize(model.y_encoder(model.tokenize_targets(batch).to(model.device)).float(), dim=-1)  # [B,D]
            if cfg.embedding_noise > 0:
                z = F.normalize(z + cfg.embedding_noise * torch.randn_like(z) / math.sqrt(z.shape[-1]), dim=-1)
        out_ = model.y_decoder(z.to(model.dtype), model.y_decoder.tokenize(batch).to(model.device))
        opt.zero_grad(set_to_none=True)
        out_.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(float(out_.loss.detach()))
        if step % cfg.log_every == 0:
            log.info("decoder step", step=step, loss=round(losses[-1], 4), lr=opt.param_groups[0]["lr"])
    model.eval()
    model.save(out)
    probe = texts[: min(4, len(texts))]
    decoded = model.decode(model.embed_text(probe, cache=False))
    return {
        "out": str(out),
        "texts": len(texts),
        "steps": len(losses),
        "first_loss": round(losses[0], 4),
        "last_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "wall_s": round(time.monotonic() - t0, 1),
        "round_trip": dict(zip(probe, decoded)),
    }
