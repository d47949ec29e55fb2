"""X-encoder: clips -> visual tokens S_V with transformers' VJEPA2Model (encoder only, no pooling).

VJEPA2Model also carries its own JEPA mask-predictor; we never call it (skip_predictor=True) and drop it
so it costs neither memory nor checkpoint space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import VJEPA2Config, VJEPA2Model

from perception.model.config import XEncoderConfig
from perception.model.weights import read_hf_config, resolve_source


def vjepa2_config(cfg: XEncoderConfig) -> VJEPA2Config:
    """The transformers config for this X-encoder (recorded hf_config wins over the dims)."""
    if cfg.hf_config is not None:
        hf = VJEPA2Config.from_dict(cfg.hf_config)
        hf.frames_per_clip = cfg.frames  # the window length is ours; RoPE extrapolates over time
        return hf
    return VJEPA2Config(
        patch_size=cfg.patch_size,
        crop_size=cfg.image_size,
        frames_per_clip=cfg.frames,
        tubelet_size=cfg.tubelet,
        hidden_size=cfg.hidden,
        num_attention_heads=cfg.heads,
        num_hidden_layers=cfg.layers,
        mlp_ratio=cfg.mlp_ratio,
        # the JEPA predictor inside VJEPA2Model is deleted after construction: keep it minimal
        pred_hidden_size=cfg.heads * 6,
        pred_num_attention_heads=cfg.heads,
        pred_num_hidden_layers=1,
    )


def frame_indices(T: int, frames: int, rule: str) -> torch.Tensor:
    """Which of T frames a window of `frames` takes, spread evenly from the first to the last."""
    if rule == "floor":  # numpy's linspace(..., dtype=int): float64 positions, truncated
        return torch.linspace(0, T - 1, frames, dtype=torch.float64).floor().long()  # [frames]
    return torch.linspace(0, T - 1, frames).round().long()  # [frames]


def resize_plan(H: int, W: int, S: int, rule: str) -> tuple[int, int, int, int]:
    """(h, w, top, left): resize H x W so the short side is S, then crop S x S at (top, left).

    "torchvision" reproduces torchvision's Resize(S) then CenterCrop(S): long side int(S * long / short),
    no resize at all when the short side is already S, crop offsets int(round((h - S) / 2))."""
    if rule == "torchvision":
        if W <= H:
            w, h = S, int(S * H / W)
        else:
            h, w = S, int(S * W / H)
        return h, w, int(round((h - S) / 2.0)), int(round((w - S) / 2.0))
    if (H, W) == (S, S):
        return S, S, 0, 0
    scale = S / min(H, W)
    h, w = max(S, round(H * scale)), max(S, round(W * scale))
    return h, w, (h - S) // 2, (w - S) // 2


class XEncoder(nn.Module):
    def __init__(self, cfg: XEncoderConfig, load_weights: bool = True):
        super().__init__()
        if cfg.frames % cfg.tubelet:
            raise ValueError(f"x_encoder.frames ({cfg.frames}) must be a multiple of tubelet ({cfg.tubelet})")
        if cfg.weights and load_weights:
            path = resolve_source(cfg.weights, "x_encoder")
            cfg.hf_config = read_hf_config(path)
            backbone = VJEPA2Model.from_pretrained(str(path), local_files_only=True)
        else:
            backbone = VJEPA2Model(vjepa2_config(cfg))
        hf = backbone.config
        # adopt the loaded layout so that config.json describes what actually runs
        cfg.image_size, cfg.patch_size, cfg.tubelet = hf.crop_size, hf.patch_size, hf.tubelet_size
        cfg.hidden, cfg.layers, cfg.heads = hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads
        hf.frames_per_clip = cfg.frames
        del backbone.predictor  # never used: we take encoder tokens only
        backbone.predictor = None
        self.cfg = cfg
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 1, 3, 1, 1), persistent=False)
        if cfg.frozen:
            self.backbone.requires_grad_(False)

    @property
    def out_dim(self) -> int:
        return self.cfg.hidden

    def train(self, mode: bool = True) -> XEncoder:
        super().train(mode)
        if self.cfg.frozen:
            self.backbone.eval()  # a frozen encoder stays deterministic (no dropout / drop-path)
        return self

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """[B,T,C,H,W] or images [B,C,H,W], uint8 (0-255) or float (0-1) -> normalised [B,T',3,S,S].

        Images are repeated to T' = cfg.frames; clips of another length are sampled uniformly in time;
        frames are resized (short side to S) and centre-cropped to S, as V-JEPA 2's processor does.
        """
        if clips.dim() == 4:
            clips = clips.unsqueeze(1)  # [B,1,C,H,W]
        if clips.dim() != 5 or clips.shape[2] not in (1, 3):
            raise ValueError(f"clips must be [B,T,C,H,W] or [B,C,H,W] with C in (1,3); got {tuple(clips.shape)}")
        B, T, C, H, W = clips.shape
        x = clips.float() / 255.0 if not clips.is_floating_point() else clips.float()
        if C == 1:
            x = x.expand(B, T, 3, H, W)
        Tm = self.cfg.frames
        if T != Tm:
            idx = frame_indices(T, Tm, self.cfg.frame_index).to(x.device)  # T=1 repeats the image
            x = x[:, idx]  # [B,Tm,3,H,W]
        S = self.cfg.image_size
        h, w, top, left = resize_plan(H, W, S, self.cfg.resize)
        if (h, w) != (H, W):
            x = F.interpolate(
                x.reshape(B * Tm, 3, H, W), size=(h, w), mode="bilinear", antialias=True, align_corners=False
            ).reshape(B, Tm, 3, h, w)
        if (h, w) != (S, S):
            x = x[:, :, :, top : top + S, left : left + S]  # [B,Tm,3,S,S]
        return (x - self.mean) / self.std

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips -> S_V [B, N, Dv] with N = (T/tubelet)(S/p)^2 (every patch token, no pooling)."""
        x = self.preprocess(clips).to(self.backbone.get_input_embeddings().proj.weight.dtype)
        out = self.backbone(pixel_values_videos=x, skip_predictor=True)
        return out.last_hidden_state  # [B, N, Dv]
