"""The training bench's own arithmetic: FLOPs counted from the code match a hand count, a step row is whole."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.training.bench import build_model, measure_step, projection, vitl_flops_per_sample


def test_flop_counter_counts_a_linear_layer_forward_and_backward():
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(8, 64, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with counter:
        layer(x).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 8 * 64 * 32  # forward, grad of input, grad of weight


def test_vitl_flops_are_counted_on_the_meta_device():
    f = vitl_flops_per_sample()
    assert f["visual_tokens"] == 2048 and 7e8 < f["trainable_params"] < 9e8
    # a transformer's forward is ~2 FLOPs per parameter per token: ~300M x 2048 x 2 for ViT-L
    assert 1.2 < f["x_encoder_forward_tflop"] < 2.5
    assert 3 * f["x_encoder_forward_tflop"] < f["trainable_forward_backward_tflop"]


def test_a_cpu_step_row_and_the_projection(tmp_path):
    model = build_model(False, tmp_path, torch.device("cpu"))
    live = measure_step(model, 2, cached=False, device=torch.device("cpu"), steps=1)
    cached = measure_step(model, 2, cached=True, device=torch.device("cpu"), steps=1)
    assert live["samples_per_s"] > 0 and cached["gflops_per_sample"] < live["gflops_per_sample"]
    rows = projection(100.0, {"b": 3_600_000})
    assert [(r["gpus"], r["gpu_h"]) for r in rows] == [(1, 10.0), (8, 10.0), (192, 10.0)]
