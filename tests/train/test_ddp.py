"""Two gloo ranks under a real torchrun: DDP training runs every stage, gathers negatives across ranks,
and writes one loadable checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import torch
import yaml

from perception.model import VLJepa
from tests.train.conftest import small_train_dict


def test_two_rank_gloo_torchrun_trains_all_stages(tmp_path):
    cfg = small_train_dict(
        stage1={"steps": 3, "batch_size": 4, "lr": 3e-3},
        stage2={"steps": 2, "batch_size": 4, "lr": 1e-3},
        stage3={"steps": 2, "batch_size": 4, "lr": 1e-3},
    )
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "perception.cli",
            "train",
            "--config",
            str(path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines() if line.startswith('{"component"')]
    progress = [r for r in logs if r.get("event") == "progress"]
    assert progress and all(r["rank"] == 0 for r in progress)  # only rank 0 reports
    contrastive = [r for r in progress if r["stage"] in ("stage1", "stage2")]
    # negatives come from both ranks: the InfoNCE baseline is ln(2 ranks x 4 rows)
    assert all(math.isclose(r["ln_b"], round(math.log(8), 3)) for r in contrastive)
    starts = [r for r in logs if r.get("event") == "stage start"]
    assert {r["global_batch"] for r in starts} == {8}
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"out"')]
    assert len(summaries) == 2 and all(s["global_step"] == 7 for s in summaries)  # both ranks finished
    model = VLJepa.load(out, device="cpu")
    assert model.cfg.x_encoder.hidden == 48


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from perception.model.loss import info_nce
    from perception.train.distributed import DistEnv, gather_rows

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    mine = slice(rank * 4, rank * 4 + 4)
    p = pred[mine].clone().requires_grad_(True)
    t = target[mine].clone().requires_grad_(True)
    env = DistEnv(rank=rank, world=world)
    loss = info_nce(gather_rows(p, env), gather_rows(t, env), 0.1).loss
    loss.backward()
    torch.save({"loss": loss.detach(), "p": p.grad, "t": t.grad}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_infonce_gradient_is_the_global_gradient(tmp_path):
    """Two gloo ranks holding half a batch each get, after the gather, world x the single-process gradient
    of the full-batch loss on their rows (DDP's averaging then makes it exact)."""
    import socket

    import torch.multiprocessing as mp

    from perception.model.loss import info_nce

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(8, 5, generator=g).requires_grad_(True)
    target = torch.randn(8, 5, generator=g).requires_grad_(True)
    full = info_nce(pred, target, 0.1).loss
    full.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        mine = slice(rank * 4, rank * 4 + 4)
        assert torch.allclose(got["loss"], full.detach(), atol=1e-6)
        assert torch.allclose(got["p"], 2 * pred.grad[mine], atol=1e-5)
        assert torch.allclose(got["t"], 2 * target.grad[mine], atol=1e-5)
