"""Data parallelism under torchrun: process-group setup and gathers that keep InfoNCE global.

Every rank computes the same global loss over the negatives of all ranks: embeddings are gathered with
`torch.distributed.nn.functional.all_gather`, whose backward sums the gradients of every rank's copy of
the loss into the rank that owns each row; DDP then averages parameter gradients over ranks, which gives
exactly the gradient of the global loss. gloo on CPU, nccl on GPU; one process = plain single-rank code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistEnv:
    """Join the torchrun process group when WORLD_SIZE > 1 (env:// rendezvous), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistEnv(rank=rank, world=world, local_rank=local)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """[B, ...] per rank -> [world*B, ...] in rank order, differentiable (autograd-aware all_gather)."""
    if not env.enabled:
        return x
    return torch.cat(dist_nn.all_gather(x.contiguous()), dim=0)


def gather_objects(items: list, env: DistEnv) -> list:
    """Concatenate a picklable list from every rank, in rank order (group keys of the rows)."""
    if not env.enabled:
        return list(items)
    out: list = [None] * env.world
    dist.all_gather_object(out, list(items))
    return [x for part in out for x in part]


def mean_over_ranks(value: float, env: DistEnv) -> float:
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / env.world


def max_over_ranks(value: float, env: DistEnv) -> float:
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
